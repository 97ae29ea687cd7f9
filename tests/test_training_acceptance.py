"""Issue 3 acceptance, through the real path (block text -> graphs -> BlockNetwork -> trainer):
the NB201 ResNet cell in the nb201 skeleton learns digits with the `smoke` profile, and a block
that produces NaN ends as a failed result with the reason."""

from __future__ import annotations

import pickle

import pytest

from graphs.nb201 import arch_to_block
from graphs.validate import validate
from training.datasets import load_dataset
from training.evaluators import TrainEvaluator
from training.models import BlockNetwork
from training.trainer import train
from training.trials import TrialSpec

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

# softmax over channels of x * m^128, m = the sample's max (> 1 after the stem's BN): the Mul chain
# overflows to inf, x * inf is +-inf (or NaN where x = 0), and softmax of inf is NaN. Squaring a
# per-sample scalar that is > 1 never passes through denormals, so the failure comes fast.
NAN_BLOCK = """##SoftmaxOfHugeMul##
0:input
1:output
2:max(dim=(1,2,3))
3:Mul
4:Mul
5:Mul
6:Mul
7:Mul
8:Mul
9:Mul
10:Mul
11:softmax(dim=1)
0->2
2,2->3
3,3->4
4,4->5
5,5->6
6,6->7
7,7->8
8,8->9
0,9->10
10->11
11->1
"""


pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoke_trains_the_nb201_resnet_cell_on_digits() -> None:
    block = arch_to_block(RESNET)
    assert validate(block, "base") == []
    net = BlockNetwork(str(block), macro="nb201", dataset="digits")
    net = pickle.loads(pickle.dumps(net))  # what the pool would send to a worker
    data = load_dataset("digits", seed=0)
    r = train(net, data, "smoke", seed=0, progress=False)
    print(f"\nnb201 ResNet cell, smoke profile on digits: final valid {r.final_valid_acc:.2f}%, "
          f"test {r.final_test_acc:.2f}%, {r.train_time_s:.1f}s training, {r.params:,} params")
    assert r.ok, r.reason
    assert r.profile == "smoke" and not r.full_protocol and len(r.epochs) == 8
    assert r.final_valid_acc >= 90.0


def test_nan_block_gives_a_failed_result_with_the_reason() -> None:
    assert validate(NAN_BLOCK, "base") == []
    spec = TrialSpec(model_factory=BlockNetwork(NAN_BLOCK, macro="nb201", dataset="digits"), dataset="digits",
                     profile="smoke", seed=0, trial_id="nan")
    r = TrainEvaluator(progress=False).evaluate(spec)
    print(f"\nNaN block: {r.status}: {r.reason}")
    assert r.status == "failed"
    assert "non-finite training loss (nan)" in r.reason
    assert r.trial_id == "nan" and r.final_valid_acc is None
