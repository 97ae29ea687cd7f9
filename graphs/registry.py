"""The op registry: for each operation its parameter schema, input arity, shape rule, cost rules,
the PyTorch module class it builds and that module's arguments, and a one-line description.

Adding an op is adding one `OpSpec` to `_SPECS`; nothing else changes: the validator, cost model,
hash, compiler, source export and the op list shown to agents (`op_catalog`) all read the table.
`DEFAULT_REGISTRY` is built from `_SPECS`; `Registry.extended` gives a new registry with more ops
(for a plug-in or a test) without touching the default one, and every consumer takes a `registry`
argument (None: the default).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Union

from .dims import Dim
from .errors import ErrorCode as E
from .expr import Expr, Value
from .ir import Node
from .shapes import ShapeError, TShape

REQUIRED = object()

# Which symbols an op's parameters may use (DESIGN §3.1).
_CH = frozenset({"C", "dim"})
_WITH_B = frozenset({"B", "C", "dim"})
_ALL = frozenset({"B", "C", "dim", "H", "W"})

# What each parameter kind accepts, as an agent reads it.
KIND_HELP: Mapping[str, str] = MappingProxyType({
    "channels": "an integer or an expression in C and dim with + - * / ( )",
    "int": "an integer",
    "pair": "an integer or a pair (h,w)",
    "bool": "True or False",
    "float": "a number in [0, 1)",
    "axis": "one axis index (negative counts from the end)",
    "axes": "an axis index or a tuple of them",
    "shape": "sizes, as expressions in the op's symbols",
})


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of KIND_HELP
    default: Any = REQUIRED
    minimum: int | None = 1  # for int and pair kinds

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# The module class an op builds: "nn.Name" (torch.nn), "Name" (graphs.torch_ops), or a class object
# (an op defined outside graphs; its source must import only torch, since export embeds it verbatim).
ModuleRef = Union[str, type]


@dataclass(frozen=True)
class ModuleArgs:
    """Constructor arguments of one node's module (what an OpSpec's `build` returns)."""

    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def module_args(*args: Any, **kwargs: Any) -> ModuleArgs:
    return ModuleArgs(args, tuple(kwargs.items()))


@dataclass(frozen=True)
class ModuleSpec:
    """What to build for one node: the registry's module class and its arguments. The same spec
    instantiates the module and prints its constructor in exported source."""

    cls: ModuleRef
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def source_name(self) -> str:
        """How exported source spells the class: `nn.Conv2d`, `AddN`, or a custom class's name."""
        return self.cls if isinstance(self.cls, str) else self.cls.__name__


@dataclass
class Ctx:
    """What a rule sees for one node: resolved parameters, input shapes, symbol values."""

    node: int
    op: str
    p: dict[str, Any]
    ins: list[TShape]
    env: dict[str, Dim]
    out: TShape | None = None

    def fail(self, code: E, message: str):
        raise ShapeError(code, f"{self.op} {message}")

    def show(self, s: TShape) -> str:
        return s.show(self.env)

    def show_dim(self, d: Dim) -> str:
        from .dims import readable
        return readable(d, self.env)


@dataclass(frozen=True)
class OpSpec:
    """One operation. `module` is the class its nodes build (None only for `input` and `output`);
    `build` gives that class's arguments for one node; `doc` is the one line agents read."""

    name: str
    params: tuple[Param, ...] = ()
    arity: tuple[int, int | None] = (1, 1)
    ordered: bool = False  # input order changes the result
    varargs: str | None = None  # positional values collect into this parameter
    symbols: frozenset[str] = _CH
    shape: Callable[[Ctx], TShape] = field(default=lambda c: c.ins[0])
    n_params: Callable[[Ctx], int] = field(default=lambda c: 0)
    macs: Callable[[Ctx], int] = field(default=lambda c: 0)
    module: ModuleRef | None = None
    build: Callable[[Ctx], ModuleArgs] = field(default=lambda c: ModuleArgs())
    doc: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def module_spec(self, ctx: Ctx) -> ModuleSpec:
        """The module one node of this op builds (the class always comes from the registry entry)."""
        a = self.build(ctx)
        return ModuleSpec(self.module, a.args, a.kwargs)


# ---------------------------------------------------------------- shape helpers

def _need_rank(c: Ctx, s: TShape, ranks: tuple[int, ...]) -> None:
    if s.rank not in ranks:
        c.fail(E.RANK, f"needs a {' or '.join(map(str, ranks))}-D input, got {c.show(s)}")


def _channels_first(c: Ctx) -> TShape:
    s = c.ins[0]
    _need_rank(c, s, (4,))
    if s.tags[1] != "C":
        c.fail(E.CHANNEL_AXIS, f"expects channels at dim 1 of (B,C,H,W); got {c.show(s)} "
                               f"whose dim 1 is not the channel axis (permute back first)")
    return s


def _channels_last(c: Ctx) -> TShape:
    s = c.ins[0]
    if s.rank < 2 or s.tags[-1] != "C":
        c.fail(E.CHANNEL_AXIS, f"acts on the last dimension, which must be channels; got {c.show(s)} "
                               f"(permute to channels-last first, e.g. permute(0,2,3,1))")
    return s


def _same_pad(c: Ctx, size: Dim, k: int, s: int, d: int, axis: str) -> tuple[Dim, int]:
    ke = d * (k - 1) + 1
    pad = max(0, (ke - s + 1) // 2)
    out = (size + 2 * pad - ke) // s + 1
    if not out.eq(size // s):
        c.fail(E.SAME_PADDING, f"kernel {k} (dilation {d}) with stride {s} cannot keep 'same' shape on {axis}: "
                               f"{c.show(c.ins[0])} would give {axis}={'|'.join(map(str, out.vals))}; "
                               f"use an odd kernel with stride 1, or stride 2")
    if out.any_le(0):
        c.fail(E.EMPTY_DIM, f"leaves no {axis} extent on {c.show(c.ins[0])}")
    return out, pad


def _spatial(c: Ctx, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int] = (1, 1)):
    x = c.ins[0]
    h, ph = _same_pad(c, x.dims[2], k[0], s[0], d[0], "H")
    w, pw = _same_pad(c, x.dims[3], k[1], s[1], d[1], "W")
    return h, w, (ph, pw)


def _positive(c: Ctx, name: str, v: Dim) -> None:
    if v.any_le(0):
        c.fail(E.EMPTY_DIM, f"{name} evaluates to {'|'.join(map(str, v.vals))}, which is not positive "
                            f"at every width (e.g. C/64 is 0 at C=48)")


# ---------------------------------------------------------------- ops

def _conv_shape(c: Ctx) -> TShape:
    x = _channels_first(c)
    cin, cout, g = x.dims[1], c.p["out_channels"], c.p["groups"]
    _positive(c, "out_channels", cout)
    _positive(c, "groups", g)
    if any((cin % g).vals) or any((cout % g).vals):
        c.fail(E.GROUPS, f"groups={c.show_dim(g)} must divide input channels {c.show_dim(cin)} and "
                         f"out_channels {c.show_dim(cout)} (here {'|'.join(map(str, cin.vals))} and "
                         f"{'|'.join(map(str, cout.vals))} by {'|'.join(map(str, g.vals))}); "
                         f"use groups=1, a common divisor, or groups=C with out_channels=C")
    h, w, _ = _spatial(c, c.p["kernel_size"], c.p["stride"], c.p["dilation"])
    return TShape((x.dims[0], cout, h, w), ("B", "C", "S", "S"))


def _conv_params(c: Ctx) -> int:
    cin, cout = c.ins[0].dims[1].value, c.p["out_channels"].value
    kh, kw = c.p["kernel_size"]
    return cout * (cin // c.p["groups"].value) * kh * kw + (cout if c.p["bias"] else 0)


def _conv_macs(c: Ctx) -> int:
    kh, kw = c.p["kernel_size"]
    return c.out.numel() * (c.ins[0].dims[1].value // c.p["groups"].value) * kh * kw


def _conv_build(c: Ctx) -> ModuleArgs:
    _, _, pad = _spatial(c, c.p["kernel_size"], c.p["stride"], c.p["dilation"])
    return module_args(c.ins[0].dims[1].value, c.p["out_channels"].value, kernel_size=c.p["kernel_size"],
                       stride=c.p["stride"], padding=pad, dilation=c.p["dilation"], groups=c.p["groups"].value,
                       bias=c.p["bias"])


def _linear_shape(c: Ctx) -> TShape:
    x = _channels_last(c)
    _positive(c, "out_features", c.p["out_features"])
    return TShape(x.dims[:-1] + (c.p["out_features"],), x.tags)


def _pool_shape(c: Ctx) -> TShape:
    x = c.ins[0]
    _need_rank(c, x, (4,))
    h, w, _ = _spatial(c, c.p["kernel_size"], c.p["stride"])
    return TShape(x.dims[:2] + (h, w), x.tags)


def _pool_build(average: bool) -> Callable[[Ctx], ModuleArgs]:
    def build(c: Ctx) -> ModuleArgs:
        _, _, pad = _spatial(c, c.p["kernel_size"], c.p["stride"])
        kw = dict(kernel_size=c.p["kernel_size"], stride=c.p["stride"], padding=pad)
        if average:
            kw["count_include_pad"] = False  # NB201 semantics: padding is not averaged
        return module_args(**kw)
    return build


def _adaptive_shape(c: Ctx) -> TShape:
    x = c.ins[0]
    _need_rank(c, x, (3, 4))
    oh, ow = c.p["output_size"]
    for size, o, axis in ((x.dims[-2], oh, "H"), (x.dims[-1], ow, "W")):
        if any(v < o for v in size.vals):
            c.fail(E.BAD_PARAM, f"output_size {o} on {axis} is larger than the input {c.show(x)}")
    return TShape(x.dims[:-2] + (Dim.const(oh, len(x.dims[0].vals)), Dim.const(ow, len(x.dims[0].vals))), x.tags)


def _adaptive_avg_macs(c: Ctx) -> int:
    x, (oh, ow) = c.ins[0], c.p["output_size"]
    kh, kw = x.dims[-2].value // oh, x.dims[-1].value // ow
    return (kh * kw + 1) * c.out.numel()


def _broadcast(c: Ctx) -> TShape:
    first = c.ins[0]
    for other in c.ins[1:]:
        if first.rank != other.rank:
            c.fail(E.SHAPE_MISMATCH, f"got {c.show(first)} and {c.show(other)}; inputs must have the same rank")
    dims, tags = [], []
    for axis in range(first.rank):
        col = [s.dims[axis] for s in c.ins]
        big = [d for d in col if not d.eq(1)]
        if any(not d.eq(big[0]) for d in big[1:]):
            shown = " and ".join(c.show(s) for s in c.ins)
            c.fail(E.SHAPE_MISMATCH, f"got {shown}; inputs must have equal shapes (or size 1 to broadcast)")
        pick = next((i for i, d in enumerate(col) if not d.eq(1)), 0)
        dims.append(col[pick])
        tags.append(c.ins[pick].tags[axis])
    return TShape(tuple(dims), tuple(tags))


def _matmul_shape(c: Ctx) -> TShape:
    a, b = c.ins
    if a.rank < 2 or b.rank < 2 or a.rank != b.rank:
        c.fail(E.RANK, f"needs two inputs of equal rank >= 2, got {c.show(a)} and {c.show(b)}")
    if not a.dims[-1].eq(b.dims[-2]):
        c.fail(E.SHAPE_MISMATCH, f"got {c.show(a)} @ {c.show(b)}; the last dim of the first input must equal "
                                 f"the second-to-last dim of the second")
    lead = TShape(a.dims[:-2], a.tags[:-2]), TShape(b.dims[:-2], b.tags[:-2])
    batch = _broadcast(Ctx(c.node, c.op, c.p, list(lead), c.env)) if a.rank > 2 else TShape((), ())
    return TShape(batch.dims + (a.dims[-2], b.dims[-1]), batch.tags + (a.tags[-2], b.tags[-1]))


def _norm_axis(c: Ctx, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        c.fail(E.BAD_PARAM, f"dim={axis} is out of range for a {rank}-D input {c.show(c.ins[0])}")
    return axis % rank


def _concat_shape(c: Ctx) -> TShape:
    first = c.ins[0]
    for s in c.ins[1:]:
        if s.rank != first.rank:
            c.fail(E.SHAPE_MISMATCH, f"got {c.show(first)} and {c.show(s)}; inputs must have the same rank")
    axis = _norm_axis(c, c.p["dim"], first.rank)
    total = first.dims[axis]
    for s in c.ins[1:]:
        for i in range(first.rank):
            if i != axis and not s.dims[i].eq(first.dims[i]):
                c.fail(E.SHAPE_MISMATCH, f"along dim={c.p['dim']} got {c.show(first)} and {c.show(s)}; "
                                         f"all dims but dim {axis} must match")
        total = total + s.dims[axis]
    dims = list(first.dims)
    dims[axis] = total
    return TShape(tuple(dims), first.tags)


def _reduce_shape(c: Ctx) -> TShape:
    x = c.ins[0]
    axes = {_norm_axis(c, a, x.rank) for a in c.p["dim"]}
    one = Dim.const(1, len(x.dims[0].vals))
    return TShape(tuple(one if i in axes else d for i, d in enumerate(x.dims)), x.tags)


def _softmax_shape(c: Ctx) -> TShape:
    _norm_axis(c, c.p["dim"], c.ins[0].rank)
    return c.ins[0]


def _permute_shape(c: Ctx) -> TShape:
    x, order = c.ins[0], c.p["dims"]
    norm = [_norm_axis(c, a, x.rank) for a in order]
    if sorted(norm) != list(range(x.rank)):
        c.fail(E.BAD_PARAM, f"dims={tuple(order)} is not a permutation of the {x.rank} axes of {c.show(x)}")
    return TShape(tuple(x.dims[i] for i in norm), tuple(x.tags[i] for i in norm))


def _repeat_shape(c: Ctx) -> TShape:
    x, sizes = c.ins[0], c.p["sizes"]
    if len(sizes) != x.rank:
        c.fail(E.BAD_PARAM, f"sizes has {len(sizes)} entries for a {x.rank}-D input {c.show(x)}")
    for s in sizes:
        _positive(c, "a repeat size", s)
    return TShape(tuple(d * s for d, s in zip(x.dims, sizes)), x.tags)


def _reshape_shape(c: Ctx) -> TShape:
    x, shape = c.ins[0], list(c.p["shape"])
    n = len(x.dims[0].vals)
    total = Dim.const(1, n)
    for d in x.dims:
        total = total * d
    free = [i for i, d in enumerate(shape) if d.eq(-1)]
    if len(free) > 1:
        c.fail(E.BAD_PARAM, "allows at most one -1 in shape")
    known = Dim.const(1, n)
    for i, d in enumerate(shape):
        if i not in free:
            _positive(c, "a reshape size", d)
            known = known * d
    if free:
        if any(t % k for t, k in zip(total.vals, known.vals)):
            c.fail(E.RESHAPE, f"cannot infer -1: {c.show(x)} does not split into {_show_dims(c, shape)}")
        shape[free[0]] = total // known
    elif not known.eq(total):
        c.fail(E.RESHAPE, f"{c.show(x)} has {'|'.join(map(str, total.vals))} elements, target "
                          f"{_show_dims(c, shape)} has {'|'.join(map(str, known.vals))}; element counts must match")
    chan, batch = x.dims[x.tags.index("C")] if "C" in x.tags else None, x.dims[0]
    tags = []
    for d in shape:
        if chan is not None and d.eq(chan):
            tags.append("C")
        elif d.eq(batch) and not tags:
            tags.append("B")
        elif d.eq(c.env["H"]) or d.eq(c.env["W"]):
            tags.append("S")
        else:
            tags.append("?")
    return TShape(tuple(shape), tuple(tags))


def _show_dims(c: Ctx, dims) -> str:
    from .dims import readable_shape
    return readable_shape(dims, c.env)


def _linear_in_b(c: Ctx, dims) -> tuple[tuple[int, int], ...]:
    """Compile a B-dependent size list as a*B+b pairs (the concrete env runs B over 1,2,3)."""
    out = []
    for d in dims:
        v1, v2, v3 = d.vals
        if v2 - v1 != v3 - v2:
            c.fail(E.BAD_PARAM, "sizes must be linear in B")
        out.append((v2 - v1, v1 - (v2 - v1)))
    return tuple(out)


_K = Param("kernel_size", "pair")
_SPECS: tuple[OpSpec, ...] = (
    OpSpec("input", arity=(0, 0), doc="the block's input (B,C,H,W); exactly one per block, by convention node 0"),
    OpSpec("output", doc="the block's output; exactly one input, whose shape the block kind fixes; "
                         "by convention node 1"),
    OpSpec("Conv2d", (Param("out_channels", "channels"), _K, Param("stride", "pair", 1),
                      Param("dilation", "pair", 1), Param("groups", "channels", 1), Param("bias", "bool", True)),
           shape=_conv_shape, n_params=_conv_params, macs=_conv_macs, module="nn.Conv2d", build=_conv_build,
           doc="2-D convolution with 'same' padding: (B,C,H,W) -> (B,out_channels,H/stride,W/stride); "
               "groups must divide C and out_channels (groups=C with out_channels=C is depthwise)"),
    OpSpec("Linear", (Param("out_features", "channels"), Param("bias", "bool", True)), shape=_linear_shape,
           n_params=lambda c: c.ins[0].dims[-1].value * c.p["out_features"].value
           + (c.p["out_features"].value if c.p["bias"] else 0),
           macs=lambda c: c.ins[0].dims[-1].value * c.out.numel(), module="nn.Linear",
           build=lambda c: module_args(c.ins[0].dims[-1].value, c.p["out_features"].value, bias=c.p["bias"]),
           doc="linear map of the last dimension, which must be channels (permute(0,2,3,1) first): "
               "(...,C) -> (...,out_features)"),
    OpSpec("AvgPool2d", (_K, Param("stride", "pair", 1)), shape=_pool_shape, macs=lambda c: c.out.numel(),
           module="nn.AvgPool2d", build=_pool_build(average=True),
           doc="average pool with 'same' padding (padding not averaged): H,W -> H/stride,W/stride; channels kept"),
    OpSpec("MaxPool2d", (_K, Param("stride", "pair", 1)), shape=_pool_shape, module="nn.MaxPool2d",
           build=_pool_build(average=False),
           doc="max pool with 'same' padding: H,W -> H/stride,W/stride; channels kept"),
    OpSpec("AdaptiveAvgPool2d", (Param("output_size", "pair"),), shape=_adaptive_shape, macs=_adaptive_avg_macs,
           module="nn.AdaptiveAvgPool2d", build=lambda c: module_args(c.p["output_size"]),
           doc="average pool of the last two dims to output_size, e.g. output_size=1 -> (B,C,1,1)"),
    OpSpec("AdaptiveMaxPool2d", (Param("output_size", "pair"),), shape=_adaptive_shape,
           module="nn.AdaptiveMaxPool2d", build=lambda c: module_args(c.p["output_size"]),
           doc="max pool of the last two dims to output_size, e.g. output_size=1 -> (B,C,1,1)"),
    OpSpec("ReLU", module="nn.ReLU", doc="max(x, 0) elementwise; shape unchanged"),
    OpSpec("GELU", module="nn.GELU", doc="Gaussian error linear unit, elementwise; shape unchanged"),
    OpSpec("Sigmoid", module="nn.Sigmoid", doc="logistic function elementwise, values in (0,1) (for gates); "
                                              "shape unchanged"),
    OpSpec("BN", shape=_channels_first, n_params=lambda c: 2 * c.ins[0].dims[1].value,
           macs=lambda c: 4 * c.ins[0].numel(), module="nn.BatchNorm2d",
           build=lambda c: module_args(c.ins[0].dims[1].value),
           doc="BatchNorm2d over the channels of a (B,C,H,W) input; shape unchanged"),
    OpSpec("LN", shape=_channels_last, n_params=lambda c: 2 * c.ins[0].dims[-1].value,
           macs=lambda c: 2 * c.ins[0].numel(), module="nn.LayerNorm",
           build=lambda c: module_args(c.ins[0].dims[-1].value),
           doc="LayerNorm over the last dimension, which must be channels (permute(0,2,3,1) first); shape unchanged"),
    OpSpec("Add", arity=(2, None), shape=_broadcast, module="AddN",
           doc="elementwise sum of 2 or more inputs of equal shape (size-1 dims broadcast)"),
    OpSpec("Mul", arity=(2, None), shape=_broadcast, module="MulN",
           doc="elementwise product of 2 or more inputs of equal shape (size-1 dims broadcast), e.g. a gate"),
    OpSpec("multiply", arity=(2, 2), ordered=True, shape=_matmul_shape,
           macs=lambda c: c.out.numel() * c.ins[0].dims[-1].value, module="MatMul",
           doc="matrix product of exactly 2 inputs in edge order: (...,n,k) @ (...,k,m) -> (...,n,m)"),
    OpSpec("concat", (Param("dim", "axis", 1),), arity=(2, None), ordered=True, shape=_concat_shape,
           module="Concat", build=lambda c: module_args(c.p["dim"]),
           doc="concatenate 2 or more inputs in edge order along dim (default 1, the channels)"),
    OpSpec("mean", (Param("dim", "axes"),), shape=_reduce_shape, module="Reduce",
           build=lambda c: module_args("mean", c.p["dim"]),
           doc="mean over dim (an axis or a tuple), keeping them as size 1, e.g. mean(dim=(2,3)) -> (B,C,1,1)"),
    OpSpec("sum", (Param("dim", "axes"),), shape=_reduce_shape, module="Reduce",
           build=lambda c: module_args("sum", c.p["dim"]),
           doc="sum over dim (an axis or a tuple), keeping them as size 1"),
    OpSpec("max", (Param("dim", "axes"),), shape=_reduce_shape, module="Reduce",
           build=lambda c: module_args("amax", c.p["dim"]),
           doc="maximum over dim (an axis or a tuple), keeping them as size 1; values only"),
    OpSpec("softmax", (Param("dim", "axis", -1),), shape=_softmax_shape, module="nn.Softmax",
           build=lambda c: module_args(dim=c.p["dim"]), doc="softmax along dim (default -1); shape unchanged"),
    OpSpec("permute", (Param("dims", "axes"),), varargs="dims", symbols=_WITH_B, shape=_permute_shape,
           module="Permute", build=lambda c: module_args(c.p["dims"]),
           doc="reorder the axes, e.g. permute(0,2,3,1) makes (B,C,H,W) channels-last and permute(0,3,1,2) undoes it"),
    OpSpec("repeat", (Param("sizes", "shape"),), varargs="sizes", symbols=_WITH_B, shape=_repeat_shape,
           module="Repeat", build=lambda c: module_args(_linear_in_b(c, c.p["sizes"])),
           doc="tile the input: repeat(s0,s1,...) multiplies each dim by its size (sizes in B, C, dim)"),
    OpSpec("reshape", (Param("shape", "shape"),), varargs="shape", symbols=_ALL, shape=_reshape_shape,
           module="Reshape", build=lambda c: module_args(_linear_in_b(c, c.out.dims)),
           doc="reshape to sizes in B, C, dim, H, W (one may be -1), e.g. reshape(B,C,H*W); element count kept"),
    OpSpec("DropPath", (Param("p", "float", 0.0),), module="DropPath", build=lambda c: module_args(c.p["p"]),
           doc="stochastic depth: in training zeroes a sample's whole path with probability p; identity at eval"),
    # Not in NADER's vocabulary: needed so that NB201 cells whose output gets only `none` edges are blocks.
    OpSpec("zero", module="Zero", doc="an all-zero tensor of the input's shape (cuts a path, NB201's 'none')"),
)


class RegistryError(ValueError):
    """A registry table that cannot work: duplicate names, an op without a module class, and the like."""


_STRUCTURAL = ("input", "output")


class Registry:
    """An immutable op table: lookup by name (case-insensitive, as in NADER), the allowed module
    classes, and extension into a new registry. Built from `_SPECS` for the default."""

    def __init__(self, specs: Iterable[OpSpec]):
        self.specs: tuple[OpSpec, ...] = tuple(specs)
        by_name: dict[str, OpSpec] = {}
        for s in self.specs:
            _check_spec(s)
            key = s.name.lower()
            if key in by_name:
                raise RegistryError(f"op {s.name!r} is registered twice (names match case-insensitively)")
            by_name[key] = s
        for role in _STRUCTURAL:
            if role not in by_name:
                raise RegistryError(f"a registry needs the {role!r} op; registered: {', '.join(by_name)}")
        self.ops: Mapping[str, OpSpec] = MappingProxyType(by_name)

    def lookup(self, op: str) -> OpSpec | None:
        return self.ops.get(op.lower())

    @property
    def names(self) -> tuple[str, ...]:
        """Registry spellings, in table order."""
        return tuple(s.name for s in self.specs)

    @cached_property
    def module_refs(self) -> frozenset:
        """The only module classes a compiled block may instantiate: those the entries name."""
        return frozenset(s.module for s in self.specs if s.module is not None)

    def extended(self, *specs: OpSpec) -> "Registry":
        """A new registry with these ops added; one with an existing name replaces that entry in place."""
        new = {s.name.lower(): s for s in specs}
        kept = [new.pop(s.name.lower(), s) for s in self.specs]
        return Registry(kept + list(new.values()))

    def __repr__(self) -> str:
        return f"Registry({len(self.specs)} ops)"


def _check_spec(s: OpSpec) -> None:
    if not (isinstance(s.name, str) and s.name.isidentifier()):
        raise RegistryError(f"op name {s.name!r} must be an identifier (letters, digits, _)")
    if s.module is None and s.name.lower() not in _STRUCTURAL:
        raise RegistryError(f"op {s.name!r} names no module class (module=...); only input and output build nothing")
    if not isinstance(s.module, (str, type, type(None))):
        raise RegistryError(f"op {s.name!r}: module must be 'nn.Name', a graphs.torch_ops class name or a class, "
                            f"got {type(s.module).__name__}")
    if not s.doc or "\n" in s.doc:
        raise RegistryError(f"op {s.name!r} needs a one-line doc (what it does, as an agent needs to know it)")
    names = s.param_names
    if len(set(names)) != len(names):
        raise RegistryError(f"op {s.name!r} repeats a parameter name: {', '.join(names)}")
    for p in s.params:
        if p.kind not in KIND_HELP:
            raise RegistryError(f"op {s.name!r}: parameter {p.name!r} has kind {p.kind!r}; "
                                f"valid kinds: {', '.join(KIND_HELP)}")
    if s.varargs is not None and s.varargs not in names:
        raise RegistryError(f"op {s.name!r}: varargs={s.varargs!r} is not one of its parameters ({', '.join(names)})")


DEFAULT_REGISTRY = Registry(_SPECS)
OPS: Mapping[str, OpSpec] = DEFAULT_REGISTRY.ops


def resolve_registry(registry: Registry | None) -> Registry:
    """The registry a caller asked for; None means the built-in one."""
    return DEFAULT_REGISTRY if registry is None else registry


def lookup(op: str, registry: Registry | None = None) -> OpSpec | None:
    """Ops match case-insensitively, as in NADER."""
    return resolve_registry(registry).lookup(op)


# ---------------------------------------------------------------- what agents read

@dataclass(frozen=True)
class ParamDoc:
    name: str
    kind: str
    default: str | None  # as the text format writes it; None when the parameter is required
    help: str  # what the kind accepts

    @property
    def required(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class OpDoc:
    """One op as the prompts list it: `signature` like
    "Conv2d(out_channels, kernel_size, stride=1, dilation=1, groups=1, bias=True)"."""

    name: str
    signature: str
    doc: str
    arity: tuple[int, int | None]
    inputs: str  # the arity in words, e.g. "2 or more inputs, in edge order"
    params: tuple[ParamDoc, ...]


def _show_default(v: Any) -> str:
    from .expr import show_value
    return show_value(v) if isinstance(v, (bool, tuple, Expr)) else str(v)


def param_signature(spec: OpSpec) -> str:
    """`out_channels, kernel_size, stride=1, ...`; a varargs parameter is shown as `*name`."""
    parts = []
    for p in spec.params:
        shown = f"*{p.name}" if p.name == spec.varargs else p.name
        parts.append(shown if p.required else f"{shown}={_show_default(p.default)}")
    return ", ".join(parts)


def _inputs_text(spec: OpSpec) -> str:
    lo, hi = spec.arity
    if hi == 0:
        return "no inputs"
    if lo == hi:
        text = f"exactly {lo} input{'s' if lo != 1 else ''}"
    elif hi is None:
        text = f"{lo} or more inputs"
    else:
        text = f"{lo} to {hi} inputs"
    return text + (", in edge order" if spec.ordered else "")


def op_catalog(registry: Registry | None = None, *, include_io: bool = False) -> list[OpDoc]:
    """Every op of the registry in table order, as agents should read it (the prompts render this).
    `input` and `output` are left out unless include_io: they are the block's ends, not ops to add."""
    out = []
    for s in resolve_registry(registry).specs:
        if s.name.lower() in _STRUCTURAL and not include_io:
            continue
        sig = param_signature(s)
        params = tuple(ParamDoc(p.name, p.kind, None if p.required else _show_default(p.default), KIND_HELP[p.kind])
                       for p in s.params)
        out.append(OpDoc(s.name, f"{s.name}({sig})" if sig else s.name, s.doc, s.arity, _inputs_text(s), params))
    return out


def canonical_params(node: Node, registry: Registry | None = None) -> tuple[str, list[tuple[str, Value]]]:
    """Registry spelling of the op and its parameters in schema order, defaults dropped,
    single-value pairs shown as one int. Unknown ops and parameters pass through unchanged."""
    spec = lookup(node.op, registry)
    if spec is None:
        return node.op, list(node.params) + [(f"_{i}", a) for i, a in enumerate(node.args)]
    given = dict(node.params)
    leftover = []  # positional values that fill no parameter: kept, so the node stays what it was
    if node.args:
        if spec.varargs:
            if spec.varargs in given:
                leftover = list(enumerate(node.args))
            else:
                given[spec.varargs] = node.args if len(node.args) > 1 else node.args[0]
        else:
            for i, a in enumerate(node.args):
                if i < len(spec.params) and spec.params[i].name not in given:
                    given[spec.params[i].name] = a
                else:
                    leftover.append((i, a))
    out = []
    for p in spec.params:
        if p.name not in given:
            continue
        v = _collapse(given[p.name], p)
        if not p.required and _is_default(v, p):
            continue
        out.append((p.name, v))
    out += [(k, v) for k, v in given.items() if k not in spec.param_names]
    out += [(f"_{i}", a) for i, a in leftover]
    return spec.name, out


def _collapse(v: Value, p: Param) -> Value:
    if p.kind == "bool" and isinstance(v, Expr) and v.text in ("0", "1"):
        return v.text == "1"
    if p.kind == "pair" and isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return v[0]
    if p.kind == "axes" and isinstance(v, tuple) and len(v) == 1:
        return v[0]
    if p.kind == "shape" and not isinstance(v, tuple):
        return (v,)
    return v


def _is_default(v: Value, p: Param) -> bool:
    d = p.default
    if isinstance(v, Expr):
        return not isinstance(d, bool) and isinstance(d, int) and v.text == str(d)
    if isinstance(v, bool) or isinstance(d, bool):
        return isinstance(v, bool) and isinstance(d, bool) and v == d
    return v == d
