"""Issue 10 part 2: an op is one registry entry. A toy op defined here, in one `OpSpec`, is validated
(with typed errors for bad parameters), costed, hashed, compiled and run, exported as standalone
source that runs, and listed by `op_catalog`, all through a registry extended with it; the built-in
registry is left as it was."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from graphs.compile import build_model, count_params, instantiate
from graphs.cost import network_cost
from graphs.errors import ErrorCode
from graphs.export import export_source
from graphs.hashing import canonical_hash
from graphs.ir import parse_block, print_block
from graphs.registry import DEFAULT_REGISTRY, OpSpec, Param, RegistryError, module_args, op_catalog
from graphs.validate import validate

from export_check import assert_same_outputs, rebuild_exported


class ChannelScale(nn.Module):
    """y = factor * w * x, with a learned weight w per channel."""

    def __init__(self, channels, factor):
        super().__init__()
        self.factor = factor
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return self.factor * self.weight.view(1, -1, 1, 1) * x


def _scale_shape(c):
    if c.ins[0].rank != 4:
        c.fail(ErrorCode.RANK, f"needs a (B,C,H,W) input, got {c.show(c.ins[0])}")
    return c.ins[0]


# The whole op: parameter schema, shape rule, cost rules, module class and its arguments, description.
SCALE = OpSpec("Scale", (Param("factor", "int"),), shape=_scale_shape,
               n_params=lambda c: c.ins[0].dims[1].value, macs=lambda c: c.ins[0].numel(),
               module=ChannelScale, build=lambda c: module_args(c.ins[0].dims[1].value, c.p["factor"]),
               doc="multiplies each channel by a learned weight times a fixed integer factor; shape unchanged")
REG = DEFAULT_REGISTRY.extended(SCALE)

CELL = """##Scaled##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3,bias=False)
3:BN
4:{op}
5:Add
0->2
2->3
3->4
4,0->5
5->1
"""


def cell(op: str = "Scale(factor=2)"):
    return parse_block(CELL.format(op=op))


def test_validated_with_typed_errors_for_bad_parameters():
    assert validate(cell(), registry=REG) == []
    assert validate(cell("scale(factor=3)"), registry=REG) == []  # case-insensitive, like every op
    cases = {
        "Scale(factor=0)": ([ErrorCode.BAD_PARAM], "factor=0 must be >= 1"),
        "Scale(factor=C)": ([ErrorCode.BAD_PARAM], "must be a fixed integer"),
        "Scale(factr=2)": ([ErrorCode.UNKNOWN_PARAM, ErrorCode.MISSING_PARAM], "valid parameters: factor"),
        "Scale": ([ErrorCode.MISSING_PARAM], "needs parameter 'factor'"),
    }
    for op, (codes, text) in cases.items():
        issues = validate(cell(op), registry=REG)
        assert [i.code for i in issues] == codes, (op, issues)
        assert issues[0].node == 4 and text in issues[0].message, (op, issues)
    # The shape rule's own typed error, naming the node and the shapes.
    flat = parse_block("0:input\n1:output\n2:reshape(B,C,H*W)\n3:Scale(factor=2)\n4:reshape(B,C,H,W)\n"
                       "0->2\n2->3\n3->4\n4->1\n")
    issues = validate(flat, registry=REG)
    assert [(i.node, i.code) for i in issues] == [(3, ErrorCode.RANK)] and "(B,C,H*W)" in issues[0].message


def test_the_builtin_registry_is_untouched():
    issues = validate(cell())
    assert [(i.node, i.code) for i in issues] == [(4, ErrorCode.UNKNOWN_OP)]
    assert "Scale" not in DEFAULT_REGISTRY.names and "Scale" not in issues[0].message.split("valid operations")[1]
    assert REG.names == DEFAULT_REGISTRY.names + ("Scale",)
    with pytest.raises(RegistryError, match="not named by any op"):
        instantiate(SCALE.module_spec(_ctx_for_scale()), DEFAULT_REGISTRY)


def _ctx_for_scale():
    from graphs.registry import Ctx
    from graphs.shapes import concrete_env, input_shape

    env = concrete_env(8, 8, 4, 4)
    return Ctx(4, "Scale", {"factor": 2}, [input_shape(env)], env)


def test_costed_analytically_and_matching_the_built_module():
    with_scale = network_cost(cell(), "nb201", "cifar10", registry=REG)
    without = network_cost(parse_block(CELL.replace("4:{op}\n", "").replace("3->4\n4,0->5", "3,0->5")),
                           "nb201", "cifar10")
    # Five cells per stage at widths 16, 32, 64 and sides 32, 16, 8: C weights, C*H*W MACs each.
    assert with_scale.params - without.params == 5 * (16 + 32 + 64)
    assert with_scale.flops - without.flops == 5 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
    compiled = build_model(cell(), "nb201", "cifar10", registry=REG)
    assert count_params(compiled.module) == compiled.cost.params == with_scale.params


def test_compiled_and_run_in_torch(one_thread):
    torch.manual_seed(0)
    net = build_model(cell(), "nader", "digits", 4, registry=REG).module.eval()
    scales = [m for m in net.modules() if isinstance(m, ChannelScale)]
    assert len(scales) == 15 and {m.factor for m in scales} == {2}
    x = torch.randn(2, 3, 8, 8)
    out = net(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    with torch.no_grad():
        scales[0].weight.mul_(3.0)
    assert not torch.allclose(net(x), out)  # the toy module is on the forward path


def test_exported_source_runs_with_only_torch(one_thread, tmp_path):
    compiled = build_model(cell(), "nader", "digits", 4, registry=REG)
    src = export_source(compiled)
    imports = [ln for ln in src.splitlines() if ln.startswith(("import ", "from "))]
    assert imports == ["import torch", "from torch import nn"]
    assert "class ChannelScale(nn.Module):" in src and "ChannelScale(8, 2)" in src
    rebuilt = rebuild_exported(tmp_path / "model.py", src)
    assert type(rebuilt.s1c0_n4).__name__ == "ChannelScale" and type(rebuilt.s1c0_n4) is not ChannelScale
    assert_same_outputs(rebuilt, compiled.module, (3, 3, 8, 8))


def test_hashed_and_printed_through_the_registry():
    a, b = cell("Scale(factor=2)"), cell("scale(factor=2)")
    assert canonical_hash(a, registry=REG) == canonical_hash(b, registry=REG)
    assert canonical_hash(a, registry=REG) != canonical_hash(cell("Scale(factor=3)"), registry=REG)
    assert "4:Scale(factor=2)" in print_block(b, REG)


def test_listed_by_op_catalog():
    docs = {d.name: d for d in op_catalog(REG)}
    assert docs["Scale"].signature == "Scale(factor)"
    assert docs["Scale"].doc == SCALE.doc and docs["Scale"].inputs == "exactly 1 input"
    assert [(p.name, p.kind, p.required) for p in docs["Scale"].params] == [("factor", "int", True)]
    assert "Scale" not in {d.name for d in op_catalog()}


def test_listed_in_the_modifiers_prompt():
    """The Modifier's prompt lists the ops of the registry it is given, toy op included, with the
    entry's own signature and one-line description (agents.prompts renders op_catalog)."""
    from agents.prompts import load_prompt
    from graphs.registry import op_catalog

    prompt = load_prompt("Modifier", ops=op_catalog(REG))
    assert "Scale(factor)" in prompt and SCALE.doc in prompt
    assert "Scale(" not in load_prompt("Modifier")  # the built-in registry does not have it
    for op in op_catalog(DEFAULT_REGISTRY):
        assert op.signature in prompt
