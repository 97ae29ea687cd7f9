"""Training-free proxies (issue 12 item 1): each against a value computed by hand on a tiny network,
synflow's ranking on the NB201 skeleton, determinism per seed, and an unchanged model."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graphs.compile import build_model
from graphs.nb201 import arch_to_block
from graphs.torch_ops import DropPath
from training.proxies import (PROXIES, ProxyError, UnknownProxyError, get_proxy, grad_norm, jacob_cov, jacov,
                              params, flops, score, snip, synflow)

W1 = [[0.5, -1.0, 2.0], [-0.25, 0.75, -1.5]]  # Linear(3, 2)
W2 = [[1.5, -0.5], [-2.0, 0.25]]  # Linear(2, 2)


def _linear(weight, bias=None) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def _synflow_by_hand(w1, w2) -> float:
    """R = 1^T |W2| |W1| 1. dR/d|W1[i][j]| = sum_k |W2[k][i]| (column i of |W2|), dR/d|W2[k][i]| =
    sum_j |W1[i][j]| (row i of |W1|); the score sums |theta| times those."""
    col = [sum(abs(w2[k][i]) for k in range(len(w2))) for i in range(len(w1))]
    row = [sum(abs(v) for v in w1[i]) for i in range(len(w1))]
    s1 = sum(abs(w1[i][j]) * col[i] for i in range(len(w1)) for j in range(len(w1[0])))
    s2 = sum(abs(w2[k][i]) * row[i] for k in range(len(w2)) for i in range(len(w1)))
    return s1 + s2


def test_synflow_two_layer_linear_by_hand():
    net = nn.Sequential(_linear(W1), nn.ReLU(), _linear(W2))
    x = torch.randn(4, 3)
    assert synflow(net, x) == pytest.approx(_synflow_by_hand(W1, W2), rel=1e-12)  # 18.75 + 18.75


def test_synflow_removes_batchnorm_and_ignores_input_values():
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():  # a BN that would change the flow if it were kept
        bn.weight.copy_(torch.tensor([3.0, -0.1]))
        bn.bias.copy_(torch.tensor([5.0, 1.0]))
        bn.running_mean.copy_(torch.tensor([10.0, -4.0]))
        bn.running_var.copy_(torch.tensor([0.01, 9.0]))
    net = nn.Sequential(_linear(W1), bn, nn.ReLU(), _linear(W2))
    expected = _synflow_by_hand(W1, W2)
    assert synflow(net, torch.randn(4, 3)) == pytest.approx(expected, rel=1e-12)
    assert synflow(net, 100 * torch.randn(7, 3)) == pytest.approx(expected, rel=1e-12)


def test_synflow_is_float64_where_float32_overflows():
    # 16 layers of 64x64 weights -8: with |W| and an all-ones input every unit of layer l is 512^l, so
    # R = 64 * 512^16 = 2^150 (float32 stops at ~2^128). R is linear in each layer's weights, so each
    # layer's sum of theta * dR/dtheta is R (Euler): the score is 16 * R exactly.
    layers = [nn.Linear(64, 64, bias=False) for _ in range(16)]
    for layer in layers:
        nn.init.constant_(layer.weight, -8.0)
    got = synflow(nn.Sequential(*layers), torch.zeros(1, 64))
    assert got == pytest.approx(16 * 2.0 ** 150, rel=1e-12)
    assert got > torch.finfo(torch.float32).max


def test_jacob_cov_codes_written_down():
    # pre-activations: x1=(1,1) -> (1,1,0.5) codes 111; x2=(1,-1) -> (1,-1,-1.5) codes 100;
    # x3=(-1,1) -> (-1,1,-1.5) codes 010. N_A=3, every Hamming distance 2: K = [[3,1,1],[1,3,1],[1,1,3]],
    # det K = 3*(9-1) - 1*(3-1) + 1*(1-3) = 20.
    net = nn.Sequential(_linear([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], bias=[0.0, 0.0, -1.5]), nn.ReLU())
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    assert jacob_cov(net, x) == pytest.approx(math.log(20.0), rel=1e-12)
    # GELU has ReLU's sign pattern; two images with equal codes make K singular
    gelu = nn.Sequential(net[0], nn.GELU())
    assert jacob_cov(gelu, x) == pytest.approx(math.log(20.0), rel=1e-12)
    assert jacob_cov(net, torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, 1.0]])) == float("-inf")


def test_jacob_cov_without_activations_is_a_typed_error():
    with pytest.raises(ProxyError, match="ReLU or GELU"):
        jacob_cov(nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2))


def test_jacov_two_images_by_hand():
    # f(x) = sum(W2 relu(W1 x)); d f / dx = sum_i colsum(W2)_i * 1[unit i active] * W1[i]
    w1 = [[1.0, 0.0, 0.0], [0.0, 1.0, 2.0], [1.0, -1.0, 1.0]]
    w2 = [[1.0, 2.0, -1.0]]
    net = nn.Sequential(_linear(w1), nn.ReLU(), _linear(w2))
    x = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0]])  # pre-acts (1,3,1): all active; (1,-1,-1): unit 0
    j1 = [1.0 * 1 + 2.0 * 0 - 1.0 * 1, 0 + 2.0 * 1 - 1.0 * (-1), 0 + 2.0 * 2 - 1.0 * 1]  # (0, 3, 3)
    j2 = [1.0, 0.0, 0.0]

    def pearson(a, b):
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        cov = sum((u - ma) * (v - mb) for u, v in zip(a, b))
        return cov / math.sqrt(sum((u - ma) ** 2 for u in a) * sum((v - mb) ** 2 for v in b))

    r = pearson(j1, j2)  # corr matrix [[1, r], [r, 1]]: eigenvalues 1 - r, 1 + r
    k = 1e-5
    expected = -sum(math.log(v + k) + 1 / (v + k) for v in (1 - r, 1 + r))
    assert jacov(net, x) == pytest.approx(expected, rel=1e-9)


def _ce_grad_by_hand(w, b, xs, ys):
    """dL/dW of mean cross-entropy of softmax(Wx + b): (1/N) sum_n (p_n - onehot(y_n)) x_n^T."""
    g = [[0.0] * len(w[0]) for _ in w]
    for x, y in zip(xs, ys):
        z = [sum(wi[j] * x[j] for j in range(len(x))) + bi for wi, bi in zip(w, b)]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        p = [v / sum(e) for v in e]
        for i in range(len(w)):
            for j in range(len(x)):
                g[i][j] += (p[i] - (1.0 if i == y else 0.0)) * x[j] / len(xs)
    return g


def test_grad_norm_and_snip_of_a_linear_model_by_hand():
    w, b = [[1.0, -2.0], [0.5, 1.0], [0.0, 0.25]], [0.1, -0.2, 0.3]
    xs, ys = [[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]], [0, 2, 1]
    net = _linear(w, bias=b)
    x, y = torch.tensor(xs), torch.tensor(ys)
    g = _ce_grad_by_hand(w, b, xs, ys)
    # the reference scores weights only: the bias shapes the logits but its gradient is not counted
    norm = math.sqrt(sum(v * v for row in g for v in row))
    saliency = sum(abs(w[i][j] * g[i][j]) for i in range(3) for j in range(2))
    assert grad_norm(net, x, y) == pytest.approx(norm, rel=1e-6)
    assert snip(net, x, y) == pytest.approx(saliency, rel=1e-6)


def test_grad_norm_sums_per_layer_norms():
    net = nn.Sequential(_linear([[1.0, 2.0]]), _linear([[3.0]]))  # logits of one class: loss constant 0
    net2 = nn.Sequential(_linear([[1.0, 2.0], [0.0, 1.0]]), _linear([[3.0, -1.0], [1.0, 1.0]]))
    x, y = torch.tensor([[1.0, -1.0], [0.5, 2.0]]), torch.tensor([1, 0])
    assert grad_norm(net, x, torch.tensor([0, 0])) == 0.0
    per_layer = []
    with torch.enable_grad():
        loss = nn.functional.cross_entropy(net2(x), y)
        for layer in net2:
            (gw,) = torch.autograd.grad(loss, layer.weight, retain_graph=True)
            per_layer.append(float(gw.norm()))
    for layer in net2:
        layer.weight.grad = None
    assert grad_norm(net2, x, y) == pytest.approx(sum(per_layer), rel=1e-6)
    assert grad_norm(net2, x, y) > math.sqrt(sum(v * v for v in per_layer))  # not the global norm


NB201_5CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|none~2|"
NB201_SKIP = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
NB201_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def nb201_nets():
    """Three cells on the NB201 skeleton at digits' 8x8 (small and fast), same seed for each."""
    nets = {}
    for arch in (NB201_5CONV, NB201_SKIP, NB201_NONE):
        torch.manual_seed(0)
        nets[arch] = build_model(arch_to_block(arch), macro="nb201", dataset="digits")
    return nets


def test_synflow_ranks_five_convs_above_none_cells(nb201_nets):
    x = torch.randn(2, 3, 8, 8)
    five, skip, none = (synflow(nb201_nets[a], x) for a in (NB201_5CONV, NB201_SKIP, NB201_NONE))
    assert five > skip > none
    assert none == 0.0  # every cell outputs zeros: no path from input to output carries flow


def test_params_and_flops_are_the_analytic_cost(nb201_nets):
    net = nb201_nets[NB201_5CONV]
    counted = sum(p.numel() for p in net.module.parameters())
    assert params(net) == net.cost.params == counted
    assert params(net.module) == counted
    assert flops(net) == net.cost.flops > 0
    with pytest.raises(ProxyError, match="Compiled"):
        flops(net.module)


class _Small(nn.Module):
    """A conv net with BN and DropPath: BN statistics and the random drop make mutations visible."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.drop = DropPath(0.5)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.drop(self.relu(self.bn(self.conv(x))))
        return self.head(h.mean(dim=(2, 3)))


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randn(6, 3, 5, 5, generator=g), torch.randint(0, 3, (6,), generator=g)


def test_deterministic_per_seed_and_global_rng_untouched():
    torch.manual_seed(1)
    net, batch = _Small(), _batch()
    names = [n for n in PROXIES if n != "flops"]
    state = torch.get_rng_state()
    a = score(net, batch, names, seed=7)
    b = score(net, batch, names, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == b
    assert score(net, batch, ["grad_norm"], seed=8)["grad_norm"] != a["grad_norm"]  # DropPath draws differ


@pytest.mark.parametrize("train", [True, False])
def test_model_unchanged_after_scoring(train):
    torch.manual_seed(2)
    net, batch = _Small(), _batch()
    net.train(train)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    score(net, batch, [n for n in PROXIES if n != "flops"], seed=0)
    assert net.training is train and all(m.training is train for m in net.modules())
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and p.dtype == torch.float32 and p.requires_grad for p in net.parameters())


def test_shared_passes_equal_standalone_proxies():
    torch.manual_seed(4)
    net, (x, y) = _Small(), _batch()
    net.drop.p = 0.0  # the standalone calls below run outside score's seeding
    together = score(net, (x, y), ["snip", "jacov", "grad_norm", "jacob_cov"], seed=0)
    assert list(together) == ["snip", "jacov", "grad_norm", "jacob_cov"]
    assert together == {"snip": snip(net, x, y), "jacov": jacov(net, x, y), "grad_norm": grad_norm(net, x, y),
                        "jacob_cov": jacob_cov(net, x, y)}


def test_unknown_proxy_is_a_typed_error_listing_the_valid_ones():
    with pytest.raises(UnknownProxyError) as err:
        score(_Small(), _batch(), ["synflow", "zico"])
    assert "zico" in str(err.value) and all(n in str(err.value) for n in PROXIES)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ProxyError)
    assert get_proxy("synflow").higher_is_better and not get_proxy("synflow").needs_data
    assert list(score(_Small(), _batch(), "snip")) == ["snip"]  # one name as a string


def test_labels_required_where_the_loss_needs_them():
    with pytest.raises(ProxyError, match="labels"):
        score(_Small(), _batch()[0], ["grad_norm"])


def test_rank_statistics_numpy_matches_scipy_and_handles_inf_and_nan():
    import numpy as np
    from training.proxies import kendall_np, rank_correlations, ranks, spearman_np

    st = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 50).astype(float)  # many ties
    b = a + rng.normal(size=50)
    assert np.array_equal(ranks(a), st.rankdata(a))
    assert spearman_np(a, b) == pytest.approx(st.spearmanr(a, b).statistic, abs=1e-12)
    assert kendall_np(a, b) == pytest.approx(st.kendalltau(a, b).statistic, abs=1e-12)
    # -inf is the lowest score, NaN is left out: the remaining order is perfect
    c = rank_correlations([2.0, float("-inf"), float("nan"), 5.0, 3.0], [20, 10, 99, 50, 30], bootstrap=200, seed=1)
    assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0) and c["kendall"] == pytest.approx(1.0)
    noisy = rank_correlations(b, a, bootstrap=200, seed=3)
    lo, hi = noisy["spearman_ci"]
    assert lo < noisy["spearman"] < hi and noisy == rank_correlations(b, a, bootstrap=200, seed=3)
