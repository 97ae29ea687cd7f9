"""Blind cell spaces (graphs.blind, space.blind=true): the designers see the NB201 ops under neutral
names only, in every request the run sends; seeds are samples of the search; the offline designer
learns op values from results, enough to overturn a wrong prior and to search with none; the team's
parts switch off for the paper's ablations."""
from __future__ import annotations

import doctest
import json
import random
import re

import pytest

from agents.offline.cell import (REAL, CellChange, CellModel, Observation, apply_change, blind_vocab, canonical,
                                 rank_moves)
from conftest import SHARED_DATA
from graphs import blind as blind_module
from graphs.blind import BlindView
from graphs.nb201 import NB201_OPS, arch_to_block
from graphs.space import CELL_EDGES, DEFAULT_ROOT_ARCH
from scripted_clients import records, run_loop

TABLE = SHARED_DATA / "nb201_cifar.csv"
NB201 = ["space=nb201", "macro=nb201", "evaluator.name=nb201_table", f"evaluator.table={TABLE}",
         "evaluator.out_of_space=skip", "dataset=cifar100", "memory.embedder=hashing", "proxies.names=[]",
         "export=false", "progress=false"]
# What the acceptance names, and the descriptions of the ops (registry names, sizes, words).
FORBIDDEN = ("nor_conv", "skip_connect", "avg_pool", "3x3", "1x1", "conv2d", "avgpool")
DESCRIPTIONS = re.compile(r"\b(?:relu|bn|batchnorm|convolution\w*|pooling|identity|shortcut)\b", re.I)


def test_doctests():
    assert doctest.testmod(blind_module).failed == 0


def test_every_op_gets_a_neutral_name_shuffled_by_seed():
    views = [BlindView.for_seed(s) for s in range(6)]
    for v in views:
        assert sorted(b for _, b in v.pairs) == ["op_a", "op_b", "op_c", "op_d", "op_e"]
        assert [v.real(v.blind(op)) for op in NB201_OPS] == list(NB201_OPS)
    assert len({v.pairs for v in views}) > 1  # another seed, another naming
    assert BlindView.for_seed(3) == BlindView.for_seed(3)


def test_cell_blocks_tool_results_and_schemas_are_encoded():
    from tools.graph_tools import EditArgs

    view = BlindView.for_seed(1)
    block = str(arch_to_block(DEFAULT_ROOT_ARCH, name="Cell"))
    result = json.dumps({"ok": True, "block": block, "errors": [
        {"code": "out_of_space", "message": "AvgPool2d with kernel_size=5 is not one of the NB201 edge ops"}]})
    out = view.encode(result)
    assert not view.reveals(out) and not any(w in out.lower() for w in FORBIDDEN)
    cell = json.loads(out)["block"].strip()
    assert view.decode(cell) == canonical(DEFAULT_ROOT_ARCH)  # the block became its blind arch string
    schema = view.encode(json.dumps(EditArgs.model_json_schema()))
    assert not any(w in schema.lower() for w in FORBIDDEN)
    enums = [[x.strip().strip('"') for x in m.split(",")] for m in re.findall(r'"enum": \[([^\]]*)\]', schema)]
    # The op field lists the neutral names only, in their own order (NB201's order would be the key).
    assert ["op_a", "op_b", "op_c", "op_d", "op_e"] in enums and not view.reveals(schema)
    listed = view.encode("unknown op 'x'; valid ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3")
    assert listed.endswith("valid ops: op_a, op_b, op_c, op_d, op_e")
    # What a designer writes comes back in real names, the text around it unchanged.
    call = json.dumps({"edits": [{"kind": "set_cell_edge", "edge": "2<-1", "op": view.blind("nor_conv_1x1")}]})
    assert json.loads(view.decode(call))["edits"][0]["op"] == "nor_conv_1x1"
    assert view.decode("inspiration: none") == "inspiration: none"
    # A designer that writes a remembered real name learns nothing from the answer.
    probe = json.loads(view.decode(json.dumps({"cells": ["|nor_conv_3x3~0|+|none~0|op_a~1|+|op_b~0|op_c~1|op_d~2|"],
                                               "op": "skip_connect"})))
    assert probe["op"] == "unknown_op" and probe["cells"][0].startswith("|unknown_op~0|+|unknown_op~0|")


def run_checked(run_dir, overrides):
    """As main.py runs: the config checked and saved (config.yaml, which the report reads), then the loop."""
    import asyncio

    from hydra import compose, initialize_config_dir
    from rich.console import Console

    from agents.factory import build_run, check_config
    from conftest import ROOT
    from graphs.tree import ModificationTree

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    console = Console(file=open("/dev/null", "w"))
    check_config(cfg, run_dir, console)
    summary = asyncio.run(build_run(cfg, run_dir, console)())
    return summary, ModificationTree.load(run_dir / "tree.json"), run_dir


def _scan(text: str, view: BlindView) -> list[str]:
    low = text.lower()
    return [w for w in FORBIDDEN if w in low] + DESCRIPTIONS.findall(text) + view.reveals(text)


@pytest.mark.slow
def test_a_blind_run_sends_no_real_op_name(tmp_path):
    """Every request the run sent (the replay cache records each one with its answer) and every
    transcript holds neutral names only; the tree and the report, written for people, hold the real
    ones too, with the legend."""
    cache = tmp_path / "cache"
    summary, tree, run_dir = run_checked(tmp_path / "run", NB201 + ["space.blind=true", "trials=3", "seed=2",
                                                                    f"llm.cache={cache}"])
    assert summary.statuses.get("trained", 0) >= 2
    requests = sorted(cache.glob("*/*.json"))
    assert len(requests) >= 20
    view = BlindView.for_seed(2)
    for path in requests:
        text = path.read_text()
        assert not _scan(text, view), (path.name, _scan(text, view)[:5])
        assert not re.search(r"\d[\d,]* (?:params|FLOPs)", text)  # sizes would tell the convolutions apart
        record = json.loads(text)["request"]
        sent = json.dumps(record)
        assert "op_a" in sent or "op_b" in sent  # the cell is there, under neutral names
    roles = {json.loads(p.read_text())["request"]["messages"][0]["content"][:40] for p in requests}
    assert len(roles) >= 3  # the Proposer's, the Reflector's and the Modifier's prompts all went through
    for trial in (1, 2, 3):
        for name in ("transcript.jsonl", "transcript.md"):
            text = (run_dir / "trials" / f"{trial:04d}" / name).read_text()
            assert not _scan(text, view), (trial, name, _scan(text, view)[:5])
    assert "Conv2d" in (run_dir / "tree.json").read_text()  # real blocks for people and the evaluator
    legend = BlindView.for_seed(2).legend()
    assert legend in (run_dir / "report.html").read_text()


@pytest.mark.slow
def test_seeds_are_samples_of_the_search(tmp_path):
    """Two seeds of the offline team on the same table take different paths."""
    paths = []
    for seed in (0, 1):
        _, tree, _ = run_loop(tmp_path / f"s{seed}", NB201 + ["trials=6", f"seed={seed}"])
        paths.append([n.block for n in tree.nodes if n.trial])
    assert paths[0] != paths[1]
    assert len(paths[0]) >= 6


def test_a_blind_cell_is_edited_by_its_edges_only():
    """In a blind space the Modifier's edit tool takes set_cell_edge and arch strings only: no edit
    names a registry op, and the draft never stops being a cell."""
    import asyncio

    from autogen_core import CancellationToken

    from tools.graph_tools import Draft, edit_tool

    draft = Draft.start(str(arch_to_block(DEFAULT_ROOT_ARCH)))
    tool = edit_tool(draft, cells_only=True)
    assert "add_node" not in json.dumps(tool.schema) and "set_cell_edge" in json.dumps(tool.schema)

    def call(edits):
        return asyncio.run(tool.run_json({"edits": edits}, CancellationToken()))

    assert not call([{"kind": "replace_block", "text": "##B##\n0:input\n1:output\n0->1\n"}]).ok
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="set_cell_edge"):  # the team turns this into an error result
        call([{"kind": "add_node", "id": 9, "op": "ReLU"}])
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert call([{"kind": "replace_block", "text": arch}]).ok and canonical(arch) == canonical(
        __import__("graphs.space", fromlist=["block_to_arch"]).block_to_arch(draft.block))


def _truth(op_values: dict[str, float]):
    """A synthetic additive benchmark: a cell's accuracy is the sum of its live edges' op values."""
    from agents.offline.cell import live_arch
    from graphs.nb201 import parse_arch

    def acc(arch: str) -> float:
        return sum(op_values[op] for op in parse_arch(live_arch(arch)).values())
    return acc


def _observe(acc, vocab, n: int, rng: random.Random, names=None):
    """n changes of one edge of random cells, each with its true delta, the cells before and after
    written in `vocab`'s names (as experience records give them: "... => ARCH")."""
    from agents.offline.cell import live_arch
    from graphs.nb201 import format_arch, parse_arch

    shown = names or (lambda op: op)

    def written(arch: str) -> str:
        return format_arch({e: shown(op) for e, op in parse_arch(arch).items()})

    out = []
    while len(out) < n:
        before = format_arch({e: rng.choice(NB201_OPS) for e in CELL_EDGES})
        edge = rng.choice(CELL_EDGES)
        old = parse_arch(before)[edge]
        new = rng.choice([op for op in NB201_OPS if op != old])
        after = apply_change(before, (CellChange(edge, old, new),))
        if live_arch(after) == live_arch(before):
            continue  # a change on an idle edge: the designer's own ranking never proposes one
        move = (CellChange(edge, shown(old), shown(new)),)
        out.append(Observation(move, acc(after) - acc(before), written(before), written(after)))
    return out


def test_results_overturn_a_wrong_prior():
    """The prior rates the 3x3 conv best; on a benchmark where the pool is best (the names of a
    permuted table), a dozen observed changes make the model rank pooling first."""
    acc = _truth({"none": 0.0, "nor_conv_3x3": 0.2, "nor_conv_1x1": 1.0, "skip_connect": 0.5, "avg_pool_3x3": 3.0})
    root = canonical(DEFAULT_ROOT_ARCH)
    prior = CellModel.fit([])
    obs = _observe(acc, REAL, 12, random.Random(0))
    learned = CellModel.fit(obs)
    value = {op: learned.weights[NB201_OPS.index(op)] for op in NB201_OPS}
    assert max(value, key=value.get) == "avg_pool_3x3"
    assert prior.weights[NB201_OPS.index("nor_conv_3x3")] > prior.weights[NB201_OPS.index("avg_pool_3x3")]
    best = rank_moves(root, learned, random.Random(0), want=1)[0]
    assert all(c.new == "avg_pool_3x3" for c in best.move)


def test_a_flat_prior_learns_from_results_alone():
    """In a blind space the prior is flat: every op is worth the same until results say otherwise."""
    view = BlindView.for_seed(4)
    vocab = blind_vocab(view.ops)
    flat = CellModel.fit([], vocab=vocab)
    assert len(set(flat.weights)) == 1
    acc = _truth({"none": 0.0, "nor_conv_3x3": 3.0, "nor_conv_1x1": 2.0, "skip_connect": 1.0, "avg_pool_3x3": 0.3})
    root = canonical(DEFAULT_ROOT_ARCH)
    obs = _observe(acc, vocab, 15, random.Random(1), names=view.blind)
    learned = CellModel.fit(obs, vocab=vocab)
    value = {op: learned.weights[vocab.ops.index(op)] for op in vocab.ops}
    assert max(value, key=value.get) == view.blind("nor_conv_3x3")


def test_each_trial_acts_on_a_seeded_draw_from_the_posterior():
    model = CellModel.fit([])
    root = canonical(DEFAULT_ROOT_ARCH)
    draws = [model.draw(random.Random(s)).weights for s in range(4)]
    assert len(set(draws)) == 4 and model.draw(random.Random(2)).weights == draws[2]
    firsts = {rank_moves(root, model.draw(random.Random(s)), random.Random(s), want=1)[0].cell for s in range(12)}
    assert len(firsts) >= 2  # the prior's favourite is not the only move a seed tries
    # Many consistent observations shrink the posterior: draws then agree with its mean.
    acc = _truth({"none": 0.0, "nor_conv_3x3": 3.0, "nor_conv_1x1": 2.0, "skip_connect": 1.0, "avg_pool_3x3": 0.3})
    sure = CellModel.fit(_observe(acc, REAL, 200, random.Random(3)))
    spread = [abs(a - b) for a, b in zip(sure.draw(random.Random(5)).weights[:5], sure.weights[:5])]
    assert max(spread) < 0.5


@pytest.mark.slow
def test_switched_off_parts_are_not_offered(tmp_path):
    """designer.knowledge/experience/feedback=false: the tools of that part are not offered, and
    without feedback the Modifier submits without a validator, reviewed once."""
    _, tree, run_dir = run_loop(tmp_path / "abl", NB201 + ["trials=2", "designer.knowledge=false",
                                                         "designer.experience=false", "designer.feedback=false"])
    calls = [c["call"] for t in (1, 2) for r in records(run_dir, t) if r["type"] == "ToolCallRequestEvent"
             for c in r["content"]]
    modifier = [c["call"] for t in (1, 2) for r in records(run_dir, t)
                if r["type"] == "ToolCallRequestEvent" and r["role"] == "Modifier" for c in r["content"]]
    assert calls and not {"search_knowledge", "search_experience"} & set(calls)
    assert modifier and "validate_block" not in modifier
    assert all(sum(1 for r in records(run_dir, t) if r["role"] == "Modifier" and r["type"] == "TextMessage") == 1
               for t in (1, 2))
    assert len([n for n in tree.nodes if n.trial]) >= 2
