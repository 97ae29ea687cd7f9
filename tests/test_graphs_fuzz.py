"""Bad input (issue 2): any text and any edit list give typed errors only, never another exception.

Property tests with hypothesis over random text in the format's alphabet, random op text, mutations of
the corpus blocks, single-op blocks with random values, and random edit lists (as dicts) applied to
corpus blocks: 2,700 examples in all.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from graphs.edits import EditError, apply_edits
from graphs.errors import BlockError, Issue
from graphs.ir import Block, parse_block, parse_op
from graphs.registry import DEFAULT_REGISTRY
from graphs.validate import validate

CORPUS = {p.stem: p.read_text() for p in sorted((Path(__file__).parent / "corpus").glob("*.txt"))}
KIND = {"stem_conv": "stem", "resnet_reduction": "downsample"}
KINDS = ("base", "stem", "downsample")

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Op and parameter names come from the registry (so a new op is fuzzed without touching this file), plus
# case variants (ops match case-insensitively) and names that are not ops or parameters.
_NAMES = list(DEFAULT_REGISTRY.names)
OPS = _NAMES + [n.swapcase() for n in _NAMES[::4]] + ["Conv3d", "Dropout", "inp", "x"]
PARAMS = sorted({p.name for s in DEFAULT_REGISTRY.specs for p in s.params}) + ["group", "junk", "C", "True"]
VALUES = ["C", "dim", "2*C", "C/2", "C/4", "C//2", "C*1", "4*C", "3", "1", "0", "-1", "2", "7", "(1,3)", "(3,3)",
          "(2,3)", "(0,2,3,1)", "True", "False", "0.1", "1.5", "H", "W", "B", "H*W", "C/0", "(", ")", "", "x",
          "10**9", "99999999999", "()", "(1,)", "'a'", "[1]", "C+", "--C", "1e3", "((((C))))", "B*H", "-C",
          "(0,3,1,2)", "(B,C,H*W)", "(B,C,H,W)", "C*H*W", "(1,2,1,1)", "1e400", "-0.0", "1", "0",
          "1000000000*1000000000", "C*1000000000*1000000000", "1000000000", "-1000000000-1", "C+1000000000-1000000000"]
ALPHABET = "0123456789:->,()=#\n \t.*/+_CHWBdimxReLUBNconvatdpks"


def _check_text(text: str, kind: str) -> None:
    """The properties every text must satisfy."""
    issues = validate(text, kind)
    assert isinstance(issues, list)
    assert all(isinstance(i, Issue) for i in issues), issues
    assert not any("internal validator error" in i.message for i in issues), issues
    try:
        block = parse_block(text)
    except BlockError as exc:
        assert exc.issues and all(isinstance(i, Issue) for i in exc.issues)
        return
    printed = str(block)  # printing never fails, whatever was read
    hash(block)
    assert parse_block(printed) == block, (text, printed)  # DESIGN §3.1: print parses back to an equal graph
    if not issues:
        again = parse_block(printed)
        assert again == block, (text, printed)
        assert str(again) == printed
        assert validate(printed, kind) == []


# ------------------------------------------------------------------------------ random text

tokens = st.one_of(
    st.sampled_from(OPS), st.sampled_from(PARAMS), st.sampled_from(VALUES),
    st.sampled_from(["\n", "->", ",", ":", "(", ")", "=", "#", "##", " ", "0", "1", "2", "3", "12", "-1"]),
    st.integers(-5, 40).map(str),
)


@settings(max_examples=500, **SETTINGS)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=200), st.lists(tokens, max_size=60).map("".join),
                 st.text(max_size=80)),
       st.sampled_from(KINDS))
def test_random_text(text, kind):
    _check_text(text, kind)


@settings(max_examples=300, **SETTINGS)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=60), st.lists(tokens, max_size=20).map("".join),
                 st.builds(lambda o, ps: f"{o}(" + ",".join(f"{k}={v}" for k, v in ps) + ")",
                           st.sampled_from(OPS), st.lists(st.tuples(st.sampled_from(PARAMS), st.sampled_from(VALUES)),
                                                          max_size=4))),
       st.integers(-3, 30))
def test_random_op_text(text, nid):
    try:
        node, issues = parse_op(text, nid)
    except BlockError as exc:
        assert exc.issues and all(isinstance(i, Issue) for i in exc.issues)
        return
    assert node.id == nid and all(isinstance(i, Issue) for i in issues)


@st.composite
def single_op_block(draw):
    """input -> [layout change] -> one op with random positional and named values -> [back] -> output."""
    op = draw(st.sampled_from(OPS))
    args = draw(st.lists(st.sampled_from(VALUES), max_size=4))
    named = [f"{k}={v}" for k, v in draw(st.lists(st.tuples(st.sampled_from(PARAMS), st.sampled_from(VALUES)), max_size=3))]
    body = ",".join(args + named)
    text = f"{op}({body})" if body or draw(st.booleans()) else op
    pre, post = draw(st.sampled_from([(None, None), ("permute(0,2,3,1)", "permute(0,3,1,2)"),
                                      ("reshape(B,C,H*W)", "reshape(B,C,H,W)")]))
    if pre is None:
        return f"0:input\n1:output\n2:{text}\n0->2\n2->1\n"
    return f"0:input\n1:output\n2:{pre}\n3:{text}\n4:{post}\n0->2\n2->3\n3->4\n4->1\n"


@settings(max_examples=500, **SETTINGS)
@given(single_op_block(), st.sampled_from(KINDS))
def test_single_op_blocks(text, kind):
    _check_text(text, kind)
    block = parse_block(text)
    if not block.read_issues and validate(block, kind):
        # An invalid block does not print as a valid one (nothing the validator saw is dropped).
        assert validate(str(block), kind), (text, str(block))


# ------------------------------------------------------------------------------ mutated corpus blocks

NUM = re.compile(r"-?\d+")
OPNAME = re.compile(r"(?<=:)\s*[A-Za-z_][A-Za-z0-9_]*")


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(CORPUS)))
    lines = CORPUS[name].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "number", "number", "op", "param", "param",
                                    "value", "edge", "junk_line", "char"]))
        line = lines[i]
        if how == "delete":
            del lines[i]
        elif how == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), line)
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "number":
            nums = list(NUM.finditer(line))
            if nums:
                m = nums[draw(st.integers(0, len(nums) - 1))]
                new = str(draw(st.one_of(st.integers(-3, 20), st.integers(-10**12, 10**12))))
                lines[i] = line[:m.start()] + new + line[m.end():]
        elif how == "op":
            m = OPNAME.search(line)
            if m:
                lines[i] = line[:m.start()] + draw(st.sampled_from(OPS)) + line[m.end():]
        elif how == "param":
            junk = f"{draw(st.sampled_from(PARAMS))}={draw(st.sampled_from(VALUES))}"
            if "(" in line and ":" in line:
                lines[i] = line.replace("(", f"({junk},", 1) if draw(st.booleans()) else line[:-1] + f",{junk})"
            elif ":" in line:
                lines[i] = line + f"({junk})"
        elif how == "value":
            if "=" in line:
                k = line.index("=")
                end = min([x for x in (line.find(",", k), line.find(")", k)) if x > 0] or [len(line)])
                lines[i] = line[:k + 1] + draw(st.sampled_from(VALUES)) + line[end:]
        elif how == "edge":
            a, b = draw(st.integers(-1, 16)), draw(st.integers(-1, 16))
            lines.insert(draw(st.integers(0, len(lines))), f"{a}->{b}" if draw(st.booleans()) else f"{a},{b}->1")
        elif how == "junk_line":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.text(alphabet=ALPHABET, max_size=30)))
        else:
            if line:
                k = draw(st.integers(0, len(line) - 1))
                lines[i] = line[:k] + draw(st.sampled_from(ALPHABET)) + line[k + 1:]
    return name, "\n".join(lines)


@settings(max_examples=700, **SETTINGS)
@given(mutated(), st.booleans())
def test_mutated_corpus(sample, own_kind):
    name, text = sample
    _check_text(text, KIND.get(name, "base") if own_kind else "base")


@settings(max_examples=120, **SETTINGS)
@given(st.one_of(single_op_block(), mutated().map(lambda sample: sample[1])))
def test_valid_blocks_export_source_that_runs(one_thread, text):
    """Whatever validates also exports as Python that compiles and runs (issue 10 part 5)."""
    import torch

    from graphs.compile import build_model
    from graphs.cost import BudgetError
    from graphs.export import export_source

    if validate(text, "base"):
        return
    try:
        compiled = build_model(parse_block(text), "nader", "digits", 16)
    except (BlockError, BudgetError):  # valid at the validator's widths but not at this one (C/32 at C=16): typed
        return
    ns: dict = {}
    exec(compile(export_source(compiled), "model.py", "exec"), ns)
    out = ns["build_model"]().eval()(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)


# ------------------------------------------------------------------------------ random edit lists

_good_ops = st.sampled_from(["BN", "ReLU", "GELU", "Add", "concat", "concat(dim=1)", "Conv2d(out_channels=C,kernel_size=3)",
                     "Conv2d(out_channels=C,kernel_size=1,groups=C)", "Linear(out_features=C)", "permute(0,2,3,1)",
                     "reshape(B,C,H*W)", "mean(dim=(2,3))", "Sigmoid", "Mul", "DropPath(p=0.1)", "AvgPool2d(kernel_size=3)"])
_bad_ops = st.sampled_from(["input", "output", "Conv2d(out_channels=C", "3:BN", "", " ", "B N", "permute(0)", "ReLU(1)",
                     "Conv2d(out_channels=C+,kernel_size=3)", "foo(1,2)", "x(y=(((1)))", "DropPath(p=1e400)"])
op_texts = st.integers(0, 9).flatmap(lambda i: _good_ops if i < 7 else _bad_ops if i < 9 else
                                    st.text(alphabet=ALPHABET, max_size=30))


def edit_dicts(block: Block | None = None):
    """Edit dicts, mostly well-formed and mostly about the block's own nodes and edges."""
    node_ids = [n.id for n in block.nodes] if block is not None else [0, 1, 2]
    edges = list(block.edges) if block is not None else [(0, 1)]
    ids = st.integers(0, 9).flatmap(lambda i: st.sampled_from(node_ids) if i < 7 else
                                    st.integers(-1, 20) if i < 9 else st.integers(-10**10, 10**10))
    pairs = st.integers(0, 3).flatmap(lambda i: st.sampled_from(edges) if i < 3 else st.tuples(ids, ids))
    add_node = st.fixed_dictionaries({"kind": st.just("add_node"), "op": op_texts},
                                     optional={"inputs": st.lists(ids, max_size=3), "outputs": st.lists(ids, max_size=2),
                                               "id": st.one_of(st.none(), ids)})
    remove_node = st.fixed_dictionaries({"kind": st.just("remove_node"), "id": ids})
    set_op = st.fixed_dictionaries({"kind": st.just("set_op"), "id": ids, "op": op_texts})
    add_edge = st.builds(lambda e, pos: {"kind": "add_edge", "src": e[0], "dst": e[1], **pos}, pairs,
                         st.one_of(st.just({}), st.fixed_dictionaries({"position": st.one_of(st.none(), st.integers(-2, 5))})))
    remove_edge = st.builds(lambda e: {"kind": "remove_edge", "src": e[0], "dst": e[1]}, pairs)
    insert = st.builds(lambda e, op, nid: {"kind": "insert_on_edge", "src": e[0], "dst": e[1], "op": op, **nid},
                       pairs, op_texts, st.one_of(st.just({}), st.fixed_dictionaries({"id": st.one_of(st.none(), ids)})))
    replace = st.fixed_dictionaries({"kind": st.just("replace_block"),
                                     "text": st.one_of(st.sampled_from(sorted(CORPUS.values())),
                                                       st.text(alphabet=ALPHABET, max_size=60),
                                                       mutated().map(lambda s: s[1]))})
    junk = st.one_of(
        st.dictionaries(st.sampled_from(["kind", "id", "src", "dst", "op", "text", "position", "x"]),
                        st.one_of(st.none(), st.integers(), st.text(max_size=10), st.booleans(),
                                  st.lists(st.integers(), max_size=2), st.sampled_from(["add_node", "remove_node"])),
                        max_size=4),
        st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2),
    )
    good = st.one_of(add_node, remove_node, set_op, add_edge, remove_edge, insert, replace)
    return st.integers(0, 9).flatmap(lambda i: junk if i == 0 else good)  # one malformed item in ten


BLOCKS = {name: parse_block(text) for name, text in CORPUS.items()}


@st.composite
def block_and_edits(draw):
    name = draw(st.sampled_from(sorted(BLOCKS)))
    return name, draw(st.lists(edit_dicts(BLOCKS[name]), max_size=6))


@pytest.mark.slow
@settings(max_examples=700, **SETTINGS)
@given(block_and_edits())
def test_random_edit_lists(sample):
    name, edits = sample
    block = BLOCKS[name]
    before = str(block)
    try:
        after = apply_edits(block, edits)
    except EditError as exc:
        assert exc.index is None or 0 <= exc.index < len(edits)
        assert exc.issues and all(isinstance(i, Issue) for i in exc.issues)
        assert str(block) == before  # nothing applied
        return
    assert isinstance(after, Block)
    assert str(block) == before
    issues = validate(after, KIND.get(name, "base"))
    assert all(isinstance(i, Issue) for i in issues)
    assert not any("internal validator error" in i.message for i in issues), issues
    printed = str(after)
    again = parse_block(printed)  # whatever the edits made prints as readable text of the same graph
    assert again == after, printed
    assert str(again) == printed
