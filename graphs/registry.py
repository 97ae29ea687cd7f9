"""The op registry: for each operation its parameter schema, input arity, shape rule, cost rules and
PyTorch builder. Adding an op is adding one `OpSpec` to `_SPECS`; nothing else changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

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


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # channels | int | pair | bool | float | axis | axes | shape
    default: Any = REQUIRED
    minimum: int | None = 1  # for int and pair kinds

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class ModuleSpec:
    """What to build for one node: a class name from the whitelist and its arguments. The same spec
    instantiates the module and prints its constructor in exported source."""

    cls: str
    args: tuple = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


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
    name: str
    params: tuple[Param, ...] = ()
    arity: tuple[int, int | None] = (1, 1)
    ordered: bool = False  # input order changes the result
    varargs: str | None = None  # positional values collect into this parameter
    symbols: frozenset[str] = _CH
    shape: Callable[[Ctx], TShape] = field(default=lambda c: c.ins[0])
    n_params: Callable[[Ctx], int] = field(default=lambda c: 0)
    macs: Callable[[Ctx], int] = field(default=lambda c: 0)
    build: Callable[[Ctx], ModuleSpec | None] = field(default=lambda c: None)
    doc: str = ""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


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


def _conv_build(c: Ctx) -> ModuleSpec:
    _, _, pad = _spatial(c, c.p["kernel_size"], c.p["stride"], c.p["dilation"])
    return ModuleSpec("nn.Conv2d", (c.ins[0].dims[1].value, c.p["out_channels"].value),
                      (("kernel_size", c.p["kernel_size"]), ("stride", c.p["stride"]), ("padding", pad),
                       ("dilation", c.p["dilation"]), ("groups", c.p["groups"].value), ("bias", c.p["bias"])))


def _linear_shape(c: Ctx) -> TShape:
    x = _channels_last(c)
    _positive(c, "out_features", c.p["out_features"])
    return TShape(x.dims[:-1] + (c.p["out_features"],), x.tags)


def _pool_shape(c: Ctx) -> TShape:
    x = c.ins[0]
    _need_rank(c, x, (4,))
    h, w, _ = _spatial(c, c.p["kernel_size"], c.p["stride"])
    return TShape(x.dims[:2] + (h, w), x.tags)


def _pool_build(cls: str) -> Callable[[Ctx], ModuleSpec]:
    def build(c: Ctx) -> ModuleSpec:
        _, _, pad = _spatial(c, c.p["kernel_size"], c.p["stride"])
        kw = [("kernel_size", c.p["kernel_size"]), ("stride", c.p["stride"]), ("padding", pad)]
        if cls == "nn.AvgPool2d":
            kw.append(("count_include_pad", False))  # NB201 semantics: padding is not averaged
        return ModuleSpec(cls, (), tuple(kw))
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


def _spec(cls: str, *args, **kwargs) -> Callable[[Ctx], ModuleSpec]:
    return lambda c: ModuleSpec(cls, args, tuple(kwargs.items()))


_K = Param("kernel_size", "pair")
_SPECS: tuple[OpSpec, ...] = (
    OpSpec("input", arity=(0, 0), doc="block input"),
    OpSpec("output", doc="block output"),
    OpSpec("Conv2d", (Param("out_channels", "channels"), _K, Param("stride", "pair", 1),
                      Param("dilation", "pair", 1), Param("groups", "channels", 1), Param("bias", "bool", True)),
           shape=_conv_shape, n_params=_conv_params, macs=_conv_macs, build=_conv_build,
           doc="2-D convolution, 'same' padding; H,W -> H/stride"),
    OpSpec("Linear", (Param("out_features", "channels"), Param("bias", "bool", True)), shape=_linear_shape,
           n_params=lambda c: c.ins[0].dims[-1].value * c.p["out_features"].value
           + (c.p["out_features"].value if c.p["bias"] else 0),
           macs=lambda c: c.ins[0].dims[-1].value * c.out.numel(),
           build=lambda c: ModuleSpec("nn.Linear", (c.ins[0].dims[-1].value, c.p["out_features"].value),
                                      (("bias", c.p["bias"]),)),
           doc="linear map of the last (channel) dimension"),
    OpSpec("AvgPool2d", (_K, Param("stride", "pair", 1)), shape=_pool_shape, macs=lambda c: c.out.numel(),
           build=_pool_build("nn.AvgPool2d"), doc="average pool, 'same' padding, padding excluded"),
    OpSpec("MaxPool2d", (_K, Param("stride", "pair", 1)), shape=_pool_shape, build=_pool_build("nn.MaxPool2d"),
           doc="max pool, 'same' padding"),
    OpSpec("AdaptiveAvgPool2d", (Param("output_size", "pair"),), shape=_adaptive_shape, macs=_adaptive_avg_macs,
           build=lambda c: ModuleSpec("nn.AdaptiveAvgPool2d", (c.p["output_size"],)), doc="adaptive average pool"),
    OpSpec("AdaptiveMaxPool2d", (Param("output_size", "pair"),), shape=_adaptive_shape,
           build=lambda c: ModuleSpec("nn.AdaptiveMaxPool2d", (c.p["output_size"],)), doc="adaptive max pool"),
    OpSpec("ReLU", build=_spec("nn.ReLU"), doc="rectifier"),
    OpSpec("GELU", build=_spec("nn.GELU"), doc="Gaussian error linear unit"),
    OpSpec("Sigmoid", build=_spec("nn.Sigmoid"), doc="logistic gate"),
    OpSpec("BN", shape=_channels_first, n_params=lambda c: 2 * c.ins[0].dims[1].value,
           macs=lambda c: 4 * c.ins[0].numel(),
           build=lambda c: ModuleSpec("nn.BatchNorm2d", (c.ins[0].dims[1].value,)), doc="BatchNorm2d over channels"),
    OpSpec("LN", shape=_channels_last, n_params=lambda c: 2 * c.ins[0].dims[-1].value,
           macs=lambda c: 2 * c.ins[0].numel(),
           build=lambda c: ModuleSpec("nn.LayerNorm", (c.ins[0].dims[-1].value,)),
           doc="LayerNorm over the last (channel) dimension"),
    OpSpec("Add", arity=(2, None), shape=_broadcast, build=_spec("AddN"), doc="sum of inputs (broadcasting)"),
    OpSpec("Mul", arity=(2, None), shape=_broadcast, build=_spec("MulN"), doc="product of inputs (broadcasting)"),
    OpSpec("multiply", arity=(2, 2), ordered=True, shape=_matmul_shape,
           macs=lambda c: c.out.numel() * c.ins[0].dims[-1].value, build=_spec("MatMul"),
           doc="matrix product of two inputs, in order"),
    OpSpec("concat", (Param("dim", "axis", 1),), arity=(2, None), ordered=True, shape=_concat_shape,
           build=lambda c: ModuleSpec("Concat", (c.p["dim"],)), doc="concatenate inputs in order"),
    OpSpec("mean", (Param("dim", "axes"),), shape=_reduce_shape,
           build=lambda c: ModuleSpec("Reduce", ("mean", c.p["dim"])), doc="mean over dims, keeping them"),
    OpSpec("sum", (Param("dim", "axes"),), shape=_reduce_shape,
           build=lambda c: ModuleSpec("Reduce", ("sum", c.p["dim"])), doc="sum over dims, keeping them"),
    OpSpec("max", (Param("dim", "axes"),), shape=_reduce_shape,
           build=lambda c: ModuleSpec("Reduce", ("amax", c.p["dim"])), doc="max values over dims, keeping them"),
    OpSpec("softmax", (Param("dim", "axis", -1),), shape=_softmax_shape,
           build=lambda c: ModuleSpec("nn.Softmax", (), (("dim", c.p["dim"]),)), doc="softmax along dim"),
    OpSpec("permute", (Param("dims", "axes"),), varargs="dims", symbols=_WITH_B, shape=_permute_shape,
           build=lambda c: ModuleSpec("Permute", (c.p["dims"],)), doc="reorder axes"),
    OpSpec("repeat", (Param("sizes", "shape"),), varargs="sizes", symbols=_WITH_B, shape=_repeat_shape,
           build=lambda c: ModuleSpec("Repeat", (_linear_in_b(c, c.p["sizes"]),)), doc="tile along axes"),
    OpSpec("reshape", (Param("shape", "shape"),), varargs="shape", symbols=_ALL, shape=_reshape_shape,
           build=lambda c: ModuleSpec("Reshape", (_linear_in_b(c, c.out.dims),)), doc="reshape (sizes in B,C,dim,H,W)"),
    OpSpec("DropPath", (Param("p", "float", 0.0),), build=lambda c: ModuleSpec("DropPath", (c.p["p"],)),
           doc="stochastic depth: drops the whole sample's path in training"),
    # Not in NADER's vocabulary: needed so that NB201 cells whose output gets only `none` edges are blocks.
    OpSpec("zero", build=_spec("Zero"), doc="all-zero tensor of the input's shape"),
)

OPS: dict[str, OpSpec] = {s.name.lower(): s for s in _SPECS}


def lookup(op: str) -> OpSpec | None:
    """Ops match case-insensitively, as in NADER."""
    return OPS.get(op.lower())


def canonical_params(node: Node) -> tuple[str, list[tuple[str, Value]]]:
    """Registry spelling of the op and its parameters in schema order, defaults dropped,
    single-value pairs shown as one int. Unknown ops and parameters pass through unchanged."""
    spec = lookup(node.op)
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
