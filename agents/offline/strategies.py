"""Design strategies of the offline designer: a deterministic stand-in for an LLM Proposer/Modifier.

Each strategy looks at a (valid) block, finds a site for one well-known CNN design idea (a 3x3
conv C->C, the residual Add, the node before the output, ...) and writes a `Plan`: a one- or
two-sentence summary naming where the change goes, and the typed edit list (graphs.edits models)
that carries it out, applied atomically. Strategies use the symbols C and dim, never literal
channel counts, and take new node ids from max id + 1 upwards.

    plan = choose(block, random.Random(0), tags_hint=["channel-attention"], avoid={"widen"})
    child = apply_edits(block, plan.edits)

`inject_fault` perturbs a plan into a typical LLM mistake so that the offline designer exercises
the validator -> repair loop (see agents.offline.repair) like a real model does.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from math import gcd
from typing import Callable, Iterable

from pydantic import BaseModel, Field

from graphs.dims import Dim
from graphs.edits import AddEdge, AddNode, Edit, InsertOnEdge, RemoveEdge, SetOp, apply_edits
from graphs.errors import BlockError
from graphs.expr import show_value
from graphs.infer import infer, named_values, resolve, topo_order
from graphs.ir import Block
from graphs.registry import Ctx, lookup
from graphs.shapes import TShape, input_shape, validation_env

__all__ = [
    "Plan", "NotApplicable", "Strategy", "STRATEGIES", "BY_NAME", "View", "applicable", "choose",
    "propose", "inject_fault", "FAULT_KINDS", "chan_expr",
]

class Plan(BaseModel):
    """What a Proposer writes and a Modifier carries out: a named strategy, a short summary naming
    the site in the block, and one atomic edit list."""

    strategy: str
    summary: str
    edits: list[Edit]
    tags: list[str] = Field(default_factory=list)
    site: int | None = None  # the node the change centres on
    fault: str | None = None  # set by inject_fault: which mistake was introduced


class NotApplicable(Exception):
    """The block has no site for this strategy."""

    def __init__(self, strategy: str, reason: str):
        self.strategy, self.reason = strategy, reason
        super().__init__(f"{strategy}: {reason}")


# ------------------------------------------------------------------------------ block analysis

_ENV = validation_env("base")
_ELEMENTWISE = {"bn", "relu", "gelu", "droppath"}


def chan_expr(d: Dim | None, env: dict[str, Dim] | None = None) -> str | None:
    """A symbolic channel count (`C`, `C/4`, `2*C`, `3*C/8`, `dim`, a constant) matching `d` at
    every validation assignment of the symbols (`env`, default: a base block's), or None."""
    if d is None:
        return None
    if d.is_const:
        return str(d.value)
    env = env or _ENV
    for sym in ("C", "dim"):
        sv = env[sym].vals
        if sym == "dim" and env["dim"].eq(env["C"]) or Dim(sv).is_const:
            continue
        for m in (1, 2, 4, 8, 16, 3, 32):
            for k in range(1, 65):
                if gcd(k, m) != 1:
                    continue
                if all(k * c // m == v for c, v in zip(sv, d.vals)):
                    if m == 1:
                        return sym if k == 1 else f"{k}*{sym}"
                    return f"{sym}/{m}" if k == 1 else f"{k}*{sym}/{m}"
    return None


def _kernel_text(k: tuple[int, int] | int) -> str:
    if isinstance(k, int):
        return str(k)
    return str(k[0]) if k[0] == k[1] else f"({k[0]},{k[1]})"


def conv_op(out: str, k: tuple[int, int] | int = 1, *, dilation: int = 1, groups: str = "1",
            stride: int = 1, bias: bool = True) -> str:
    parts = [f"out_channels={out}", f"kernel_size={_kernel_text(k)}"]
    if stride != 1:
        parts.append(f"stride={stride}")
    if dilation != 1:
        parts.append(f"dilation={dilation}")
    if groups != "1":
        parts.append(f"groups={groups}")
    if not bias:
        parts.append("bias=False")
    return "Conv2d(" + ",".join(parts) + ")"


@dataclass
class ConvInfo:
    id: int
    src: int  # its single input
    cin: str | None
    cout: str | None
    cin_dim: Dim
    cout_dim: Dim
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: Dim
    bias: bool

    @property
    def spatial(self) -> bool:
        return max(self.kernel) > 1

    @property
    def square3(self) -> bool:
        return self.kernel == (3, 3)

    @property
    def plain(self) -> bool:
        return self.groups.eq(1)


def _safe_infer(block: Block, env: dict[str, Dim], order: list[int]) -> dict:
    """Shape contexts of every node that can be inferred; on a broken block (wrong arity, unknown
    ops) the rest is skipped, never raised."""
    try:
        return infer(block, env, order)[0] if order else {}
    except Exception:  # noqa: BLE001 - inference on an unvalidated block: fall back node by node
        pass
    ctxs: dict = {}
    for nid in order:
        node = block.node_map[nid]
        spec = lookup(node.op)
        srcs = block.inputs.get(nid, [])
        if spec is None or any(x not in ctxs for x in srcs):
            continue
        lo, hi = spec.arity
        if len(srcs) < lo or (hi is not None and len(srcs) > hi):
            continue
        try:
            ctx = Ctx(nid, spec.name, resolve(node, spec, env), [ctxs[x].out for x in srcs], env)
            ctx.out = input_shape(env) if spec.name == "input" else spec.shape(ctx)
        except Exception:  # noqa: BLE001
            continue
        ctxs[nid] = ctx
    return ctxs


class View:
    """Read-only analysis of a block: ids, inputs/consumers, shapes at the validation widths."""

    def __init__(self, block: Block, kind: str = "base"):
        self.block = block
        self.kind = kind
        self.env = _ENV if kind == "base" else validation_env(kind)
        self.nodes = block.node_map
        self.ins = block.inputs
        self.cons = block.consumers
        self.order = topo_order(block) or []
        self.ctx = _safe_infer(block, self.env, self.order)
        ids = [n.id for n in block.nodes] + [x for e in block.edges for x in e]
        self._next = (max(ids) + 1) if ids else 2
        self.inp = next((n.id for n in block.nodes if n.op.lower() == "input"), 0)
        self.out = next((n.id for n in block.nodes if n.op.lower() == "output"), 1)
        self.pos = {n: i for i, n in enumerate(self.order)}

    # ids and names
    def new(self) -> int:
        nid = self._next
        self._next += 1
        return nid

    def op(self, nid: int) -> str:
        n = self.nodes.get(nid)
        return n.op.lower() if n else ""

    def desc(self, nid: int) -> str:
        n = self.nodes.get(nid)
        if n is None:
            return f"node {nid}"
        op = lookup(n.op).name if lookup(n.op) else n.op
        if op == "Conv2d" and nid in self.ctx:
            c = self.conv(nid)
            extra = f" {c.kernel[0]}x{c.kernel[1]}" + (f", {c.cin}->{c.cout}" if c.cin and c.cout else "")
            return f"node {nid} (Conv2d{extra})"
        if op == "input":
            return f"node {nid} (the block input)"
        ch = self.ch(nid)
        return f"node {nid} ({op}{', ' + ch + ' channels' if ch and op not in ('input', 'output') else ''})"

    # shapes
    def shape(self, nid: int) -> TShape | None:
        c = self.ctx.get(nid)
        return c.out if c else None

    def fmap(self, nid: int) -> bool:
        """A full-resolution channels-first feature map (B,*,H,W)."""
        s = self.shape(nid)
        return (s is not None and s.rank == 4 and s.tags[1] == "C" and s.dims[2].eq(self.env["H"])
                and s.dims[3].eq(self.env["W"]))

    def ch(self, nid: int) -> str | None:
        return self.expr(self.shape(nid).dims[1]) if self.fmap(nid) else None

    def expr(self, d: Dim | None) -> str | None:
        return chan_expr(d, self.env)

    def is_c(self, nid: int) -> bool:
        return self.ch(nid) == "C"

    # structure
    def out_src(self) -> int | None:
        srcs = self.ins.get(self.out, [])
        return srcs[0] if len(srcs) == 1 else None

    def ancestors(self, nid: int) -> set[int]:
        seen, stack = set(), list(self.ins.get(nid, []))
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack.extend(self.ins.get(x, []))
        return seen

    def residual_adds(self) -> list[int]:
        """Add nodes fed directly by the block input (an identity shortcut), in topological order."""
        return [n for n in self.order if self.op(n) == "add" and self.inp in self.ins.get(n, []) and self.fmap(n)]

    def branch_sites(self) -> list[tuple[int, int]]:
        """(feature, consumer) edges where a C-channel branch meets its residual Add; else the edge
        into the output."""
        sites = []
        for a in self.residual_adds():
            for s in dict.fromkeys(self.ins[a]):
                if s != self.inp and self.is_c(s):
                    sites.append((s, a))
        if not sites:
            s = self.out_src()
            if s is not None and s != self.inp and self.is_c(s):
                sites.append((s, self.out))
        return sites

    def conv(self, nid: int) -> ConvInfo:
        c = self.ctx[nid]
        p = c.p
        return ConvInfo(nid, self.ins[nid][0], self.expr(c.ins[0].dims[1]), self.expr(p["out_channels"]),
                        c.ins[0].dims[1], p["out_channels"], tuple(p["kernel_size"]), tuple(p["stride"]),
                        tuple(p["dilation"]), p["groups"], bool(p["bias"]))

    def convs(self, pred: Callable[[ConvInfo], bool] = lambda c: True) -> list[ConvInfo]:
        """Stride-1 Conv2d nodes at full resolution with symbolic channel counts, in id order."""
        out = []
        for n in sorted(self.nodes):
            if self.op(n) != "conv2d" or n not in self.ctx or len(self.ins.get(n, [])) != 1:
                continue
            c = self.conv(n)
            if c.stride != (1, 1) or not self.fmap(c.src) or not self.fmap(n) or c.cin is None or c.cout is None:
                continue
            if pred(c):
                out.append(c)
        return out

    def bias(self) -> bool:
        """The block's convention for new convs (NB201 cells write bias=False)."""
        flags = [self.ctx[n].p["bias"] for n in self.nodes if self.op(n) == "conv2d" and n in self.ctx]
        return not flags or sum(flags) * 2 >= len(flags)

    def conv_like(self, nid: int, **over: str) -> str:
        """The op text of conv `nid` with some parameters replaced (values as text)."""
        node = self.nodes[nid]
        vals = {k: show_value(v) for k, v in named_values(node, lookup(node.op)).items()}
        vals.update(over)
        vals = {k: v for k, v in vals.items() if v is not None}
        return "Conv2d(" + ",".join(f"{k}={v}" for k, v in vals.items()) + ")"

    def rewire(self, old: int, new: int, only: int | None = None) -> list[Edit]:
        """Edits that make `new` take `old`'s place as input of its (original) consumers."""
        edits: list[Edit] = []
        for c in dict.fromkeys(self.cons.get(old, [])):
            if only is not None and c != only:
                continue
            for i, s in enumerate(self.ins[c]):
                if s == old:
                    edits += [RemoveEdge(src=old, dst=c), AddEdge(src=new, dst=c, position=i)]
        return edits


def _pick(rng: random.Random, items: list, prefer: Callable | None = None):
    if prefer is not None:
        best = [x for x in items if prefer(x)]
        if best:
            items = best
    return items[rng.randrange(len(items))]


def _scaled(d: Dim, num: int, den: int = 1) -> str | None:
    return chan_expr(Dim(tuple(v * num // den for v in d.vals))) if all(v * num % den == 0 for v in d.vals) else None


# ------------------------------------------------------------------------------ strategies

Result = tuple[str, list[Edit], int]


def _se(v: View, rng: random.Random) -> Result:
    sites = v.branch_sites()
    if not sites:
        raise NotApplicable("se_attention", "no C-channel feature before a residual Add or the output")
    s, t = _pick(rng, sites, prefer=lambda x: v.op(x[0]) != "mul")
    r = rng.choice([4, 8])
    p, c1, a1, c2, sg, m = (v.new() for _ in range(6))
    edits = [
        AddNode(id=p, op="AdaptiveAvgPool2d(output_size=1)", inputs=[s]),
        AddNode(id=c1, op=conv_op(f"C/{r}", 1, bias=v.bias()), inputs=[p]),
        AddNode(id=a1, op="ReLU", inputs=[c1]),
        AddNode(id=c2, op=conv_op("C", 1, bias=v.bias()), inputs=[a1]),
        AddNode(id=sg, op="Sigmoid", inputs=[c2]),
        InsertOnEdge(src=s, dst=t, op="Mul", id=m),
        AddEdge(src=sg, dst=m),
    ]
    return (f"Add squeeze-and-excitation channel attention on {v.desc(s)} right before {v.desc(t)}: global "
            f"average pool, 1x1 conv to C/{r}, ReLU, 1x1 conv back to C and a Sigmoid gate multiplied into the "
            f"features (Mul node {m})."), edits, s


def _spatial(v: View, rng: random.Random) -> Result:
    sites = v.branch_sites()
    if not sites:
        raise NotApplicable("spatial_attention", "no C-channel feature before a residual Add or the output")
    s, t = _pick(rng, sites, prefer=lambda x: v.op(x[0]) != "mul")
    k = rng.choice([7, 5])
    mn, mx, cat, cv, sg, m = (v.new() for _ in range(6))
    edits = [
        AddNode(id=mn, op="mean(dim=1)", inputs=[s]),
        AddNode(id=mx, op="max(dim=1)", inputs=[s]),
        AddNode(id=cat, op="concat(dim=1)", inputs=[mn, mx]),
        AddNode(id=cv, op=conv_op("1", k, bias=v.bias()), inputs=[cat]),
        AddNode(id=sg, op="Sigmoid", inputs=[cv]),
        InsertOnEdge(src=s, dst=t, op="Mul", id=m),
        AddEdge(src=sg, dst=m),
    ]
    return (f"Add CBAM-style spatial attention on {v.desc(s)} before {v.desc(t)}: channel mean and max maps, "
            f"concatenated, a {k}x{k} conv to one map and a Sigmoid that gates every position (Mul node {m})."), \
        edits, s


def _residual(v: View, rng: random.Random) -> Result:
    s = v.out_src()
    if not v.residual_adds() and s is not None and s != v.inp and v.is_c(s):
        a = v.new()
        return (f"Add an identity shortcut around the whole block: sum the block input with {v.desc(s)} in a new "
                f"Add (node {a}) right before the output, so the block learns a residual."), \
            [InsertOnEdge(src=s, dst=v.out, op="Add", id=a), AddEdge(src=v.inp, dst=a)], s
    sites = []
    for c in v.convs(lambda c: c.cin == c.cout):
        end = c.id
        cons = v.cons.get(end, [])
        if len(cons) == 1 and v.op(cons[0]) == "bn" and v.ch(cons[0]) == c.cout:
            end = cons[0]
        if not v.cons.get(end) or any(c.src in v.ins.get(x, []) and v.op(x) == "add" for x in v.cons[end]):
            continue
        sites.append((c, end))
    if not sites:
        raise NotApplicable("add_residual", "the block already has an identity shortcut and no conv C->C to bridge")
    c, end = _pick(rng, sites, prefer=lambda x: x[0].src != v.inp)
    a = v.new()
    edits = [AddNode(id=a, op="Add", inputs=[end, c.src])] + v.rewire(end, a)
    return (f"Add a short residual connection around {v.desc(c.id)}: sum its input {v.desc(c.src)} with "
            f"{v.desc(end)} in a new Add (node {a}) that feeds what {end} fed."), edits, c.id


def _dense(v: View, rng: random.Random) -> Result:
    sites = []
    lates = [s for s, _ in v.branch_sites()] + [c.id for c in v.convs()]
    for late in dict.fromkeys(lates):
        for early in sorted(v.ancestors(late)):
            ch = v.ch(early)
            if ch and not ch.isdigit() and early not in v.ins.get(late, []):
                sites.append((early, late))
    if not sites:
        raise NotApplicable("dense_connection", "no pair of full-resolution features on one path")
    early, late = _pick(rng, sites, prefer=lambda x: v.is_c(x[1]))
    cat, pj = v.new(), v.new()
    out = v.ch(late)
    edits = [AddNode(id=cat, op="concat(dim=1)", inputs=[late, early]),
             AddNode(id=pj, op=conv_op(out, 1, bias=v.bias()), inputs=[cat])] + v.rewire(late, pj)
    return (f"Add a dense connection: concatenate the earlier feature {v.desc(early)} with the later "
            f"{v.desc(late)} (concat node {cat}) and fuse them with a 1x1 conv back to {out} channels (node {pj})."), \
        edits, late


def _chain_before(conv: ConvInfo, v: View, ops: list[str]) -> tuple[list[Edit], list[int]]:
    edits, ids, prev = [], [], conv.src
    for op in ops:
        nid = v.new()
        edits.append(InsertOnEdge(src=prev, dst=conv.id, op=op, id=nid))
        ids.append(nid)
        prev = nid
    return edits, ids


def _bottleneck(v: View, rng: random.Random) -> Result:
    sites = v.convs(lambda c: c.square3 and c.plain and c.cin == c.cout and _scaled(c.cout_dim, 1, 4))
    if not sites:
        raise NotApplicable("bottleneck", "no 3x3 conv with equal in and out channels")
    c = _pick(rng, sites, prefer=lambda c: c.cout == "C")
    mid, b = _scaled(c.cout_dim, 1, 4), v.bias()
    edits, ids = _chain_before(c, v, [conv_op(mid, 1, bias=b), "BN", "ReLU",
                                      conv_op(mid, 3, dilation=c.dilation[0], bias=b), "BN", "ReLU"])
    edits.append(SetOp(id=c.id, op=conv_op(c.cout, 1, bias=c.bias)))
    return (f"Turn {v.desc(c.id)} into a bottleneck: 1x1 conv {c.cin}->{mid}, BN-ReLU, 3x3 conv at {mid}, BN-ReLU, "
            f"and node {c.id} becomes the 1x1 conv back to {c.cout}."), edits, c.id


def _inverted(v: View, rng: random.Random) -> Result:
    sites = v.convs(lambda c: c.kernel in ((3, 3), (5, 5)) and c.plain)
    if not sites:
        raise NotApplicable("inverted_residual", "no plain 3x3 or 5x5 conv")
    c = _pick(rng, sites, prefer=lambda c: c.cin == c.cout)
    t = rng.choice([4, 2])
    e = _scaled(c.cin_dim, t)
    b = v.bias()
    edits, ids = _chain_before(c, v, [conv_op(e, 1, bias=b), "BN", "ReLU",
                                      conv_op(e, c.kernel, groups=e, dilation=c.dilation[0], bias=b), "BN", "ReLU"])
    edits.append(SetOp(id=c.id, op=conv_op(c.cout, 1, bias=c.bias)))
    return (f"Replace {v.desc(c.id)} by a MobileNetV2 inverted residual: 1x1 expansion to {e}, BN-ReLU, "
            f"depthwise {c.kernel[0]}x{c.kernel[1]} conv (groups={e}), BN-ReLU, and node {c.id} becomes the linear "
            f"1x1 projection to {c.cout}."), edits, c.id


def _separable(v: View, rng: random.Random) -> Result:
    sites = v.convs(lambda c: c.spatial and c.plain)
    if not sites:
        raise NotApplicable("depthwise_separable", "no plain spatial conv")
    c = _pick(rng, sites, prefer=lambda c: c.square3)
    dw = conv_op(c.cin, c.kernel, groups=c.cin, dilation=c.dilation[0] if c.dilation[0] == c.dilation[1] else 1,
                 bias=v.bias())
    if c.dilation[0] != c.dilation[1]:
        dw = dw.replace(")", f",dilation=({c.dilation[0]},{c.dilation[1]}))", 1)
    edits, ids = _chain_before(c, v, [dw] + (["BN"] if rng.random() < 0.5 else []))
    edits.append(SetOp(id=c.id, op=conv_op(c.cout, 1, bias=c.bias)))
    return (f"Make {v.desc(c.id)} depthwise-separable: a depthwise {c.kernel[0]}x{c.kernel[1]} conv "
            f"(groups={c.cin}, node {ids[0]}) followed by node {c.id} as a 1x1 pointwise conv to {c.cout}."), \
        edits, c.id


def _dilated(v: View, rng: random.Random) -> Result:
    sites = v.convs(lambda c: c.square3)
    if not sites:
        raise NotApplicable("dilated_conv", "no 3x3 stride-1 conv")
    c = _pick(rng, sites, prefer=lambda c: c.dilation == (1, 1))
    if c.dilation == (1, 1) and rng.random() < 0.5:
        return (f"Enlarge the receptive field of {v.desc(c.id)} with dilation=2, keeping its kernel, channels and "
                f"cost."), [SetOp(id=c.id, op=v.conv_like(c.id, dilation="2"))], c.id
    br, a = v.new(), v.new()
    d = 2 if c.dilation == (1, 1) else 1
    edits = [AddNode(id=br, op=conv_op(c.cout, 3, dilation=d, bias=v.bias()), inputs=[c.src]),
             AddNode(id=a, op="Add", inputs=[c.id, br])] + v.rewire(c.id, a)
    return (f"Add a parallel 3x3 conv with dilation={d} (node {br}) next to {v.desc(c.id)}, reading the same input "
            f"{v.desc(c.src)}, and sum both in Add node {a}."), edits, c.id


def _multi_branch(v: View, rng: random.Random) -> Result:
    sites = v.convs()
    if not sites:
        raise NotApplicable("multi_branch", "no stride-1 conv to widen into branches")
    c = _pick(rng, sites, prefer=lambda c: c.spatial and c.plain)
    ks = [k for k in (1, 3, 5) if (k, k) != c.kernel][:2]
    b = v.bias()
    b1, b2 = v.new(), v.new()
    edits: list[Edit] = [AddNode(id=b1, op=conv_op(c.cout, ks[0], bias=b), inputs=[c.src]),
                         AddNode(id=b2, op=conv_op(c.cout, ks[1], bias=b), inputs=[c.src])]
    if rng.random() < 0.5:
        a = v.new()
        edits += [AddNode(id=a, op="Add", inputs=[c.id, b1, b2])] + v.rewire(c.id, a)
        how = f"summed in Add node {a}"
    else:
        cat, pj = v.new(), v.new()
        edits += [AddNode(id=cat, op="concat(dim=1)", inputs=[c.id, b1, b2]),
                  AddNode(id=pj, op=conv_op(c.cout, 1, bias=b), inputs=[cat])] + v.rewire(c.id, pj)
        how = f"concatenated (node {cat}) and fused by a 1x1 conv to {c.cout} (node {pj})"
    return (f"Make {v.desc(c.id)} multi-branch, Inception-style: parallel {ks[0]}x{ks[0]} and {ks[1]}x{ks[1]} convs "
            f"to {c.cout} from the same input {v.desc(c.src)}, {how}."), edits, c.id


def _kernel(v: View, rng: random.Random) -> Result:
    sites = v.convs(lambda c: c.spatial) or v.convs(lambda c: c.plain)
    if not sites:
        raise NotApplicable("kernel_size", "no stride-1 conv")
    c = _pick(rng, sites, prefer=lambda c: c.square3)
    kh, kw = c.kernel
    if (kh, kw) == (3, 3) and rng.random() < 0.4:
        nid = v.new()
        edits = [InsertOnEdge(src=c.src, dst=c.id, op=v.conv_like(c.id, kernel_size="(1,3)"), id=nid),
                 SetOp(id=c.id, op=v.conv_like(c.id, kernel_size="(3,1)"))]
        return (f"Factorise the 3x3 kernel of {v.desc(c.id)} into a 1x3 conv (node {nid}) followed by a 3x1 conv "
                f"(node {c.id}): same receptive field, fewer weights."), edits, c.id
    new = {(3, 3): 5, (5, 5): 3, (7, 7): rng.choice([5, 3]), (1, 1): 3}.get((kh, kw), 3)
    why = "a larger receptive field" if new > max(kh, kw) else "fewer weights and a tighter receptive field"
    return (f"Change the kernel of {v.desc(c.id)} from {kh}x{kw} to {new}x{new}: {why}."), \
        [SetOp(id=c.id, op=v.conv_like(c.id, kernel_size=str(new)))], c.id


def _activation(v: View, rng: random.Random) -> Result:
    acts = [n for n in sorted(v.nodes) if v.op(n) in ("relu", "gelu") and len(v.ins.get(n, [])) == 1]
    if acts:
        n = _pick(rng, acts, prefer=lambda n: v.fmap(n))
        old = lookup(v.nodes[n].op).name
        u = v.ins[n][0]
        if rng.random() < 0.35:
            s = v.new()
            edits = [InsertOnEdge(src=u, dst=n, op="Sigmoid", id=s), SetOp(id=n, op="Mul"), AddEdge(src=u, dst=n)]
            return (f"Replace the {old} at node {n} by a sigmoid-gated unit (SiLU/Swish): x * Sigmoid(x), with the "
                    f"Sigmoid at node {s} and node {n} becoming the Mul."), edits, n
        new = "GELU" if old == "ReLU" else "ReLU"
        why = ("a smooth non-linearity that keeps small negative responses" if new == "GELU"
               else "a cheaper, sparser non-linearity")
        return f"Swap the {old} at node {n} for {new}: {why}.", \
            [SetOp(id=n, op=new)], n
    convs = v.convs()
    if not convs:
        raise NotApplicable("activation_swap", "no ReLU/GELU and no conv to follow with one")
    c = _pick(rng, convs, prefer=lambda c: c.spatial)
    g = v.new()
    return (f"Add a GELU non-linearity (node {g}) after {v.desc(c.id)}, which currently feeds on linearly."), \
        [AddNode(id=g, op="GELU", inputs=[c.id])] + v.rewire(c.id, g), c.id


def _batchnorm(v: View, rng: random.Random) -> Result:
    bare = [c for c in v.convs() if not any(v.op(x) in ("bn", "ln") for x in v.cons.get(c.id, []))]
    if bare:
        c = _pick(rng, bare, prefer=lambda c: c.spatial)
        bn = v.new()
        return (f"Normalise the output of {v.desc(c.id)} with a BatchNorm (node {bn}); it has none, which makes "
                f"training less stable."), [AddNode(id=bn, op="BN", inputs=[c.id])] + v.rewire(c.id, bn), c.id
    s = v.out_src()
    if s is None or v.op(s) == "bn" or not v.fmap(s):
        raise NotApplicable("add_batchnorm", "every conv already has a BN and the output is already normalised")
    bn = v.new()
    return (f"Add a BatchNorm (node {bn}) after {v.desc(s)}, right before the output, so every block hands on "
            f"normalised features."), [InsertOnEdge(src=s, dst=v.out, op="BN", id=bn)], s


def _preact(v: View, rng: random.Random) -> Result:
    def single(a: int, b: int) -> bool:
        return v.cons.get(a) == [b] and v.ins.get(b) == [a]

    sites = []
    for n in sorted(v.nodes):
        cs = v.cons.get(n, [])
        if v.op(n) == "conv2d" and len(cs) == 1 and v.op(cs[0]) == "bn" and single(n, cs[0]):
            bn = cs[0]
            after = v.cons.get(bn, [])
            if len(after) == 1 and v.op(after[0]) in ("relu", "gelu") and single(bn, after[0]):
                sites.append(("post", n, bn, after[0]))
        if v.op(n) in ("relu", "gelu") and len(cs) == 1 and v.op(cs[0]) == "conv2d" and single(n, cs[0]):
            cv = cs[0]
            after = v.cons.get(cv, [])
            if len(after) == 1 and v.op(after[0]) == "bn" and single(cv, after[0]):
                sites.append(("rcb", n, cv, after[0]))
    if not sites:
        raise NotApplicable("pre_activation", "no Conv-BN-ReLU or ReLU-Conv-BN chain")
    kind, a, b, c = _pick(rng, sites)
    if kind == "post":  # conv a -> BN b -> act c  ==>  BN -> act -> conv
        conv, act = v.nodes[a], v.nodes[c]
        edits = [SetOp(id=a, op="BN"), SetOp(id=b, op=lookup(act.op).name), SetOp(id=c, op=v.conv_like(conv.id))]
        text = f"the Conv-BN-{lookup(act.op).name} chain at nodes {a}, {b}, {c}"
    else:  # act a -> conv b -> BN c  ==>  BN -> act -> conv
        conv, act = v.nodes[b], v.nodes[a]
        edits = [SetOp(id=a, op="BN"), SetOp(id=b, op=lookup(act.op).name), SetOp(id=c, op=v.conv_like(conv.id))]
        text = f"the {lookup(act.op).name}-Conv-BN chain at nodes {a}, {b}, {c}"
    return (f"Reorder {text} into the pre-activation order BN -> {lookup(act.op).name} -> Conv (ResNet v2), so the "
            f"branch starts normalised and ends linear."), edits, a


def _grouped(v: View, rng: random.Random) -> Result:
    def group_of(c: ConvInfo) -> int | None:
        for g in (4, 2):
            if all(x % g == 0 for x in c.cin_dim.vals + c.cout_dim.vals):
                return g
        return None
    sites = v.convs(lambda c: c.plain and group_of(c) is not None)
    if not sites:
        raise NotApplicable("grouped_conv", "no plain conv whose channels divide into groups")
    c = _pick(rng, sites, prefer=lambda c: c.square3 and c.cin == c.cout)
    g = group_of(c)
    return (f"Split {v.desc(c.id)} into {g} groups (groups={g}, ResNeXt-style): {g}x fewer weights and MACs for the "
            f"same channels."), [SetOp(id=c.id, op=v.conv_like(c.id, groups=str(g)))], c.id


def _pool_branch(v: View, rng: random.Random) -> Result:
    adds = v.residual_adds()
    if adds:
        a = _pick(rng, adds)
        have = {v.op(x) for x in v.ins[a]}
        kinds = [k for k in ("AvgPool2d", "MaxPool2d") if k.lower() not in have] or ["AvgPool2d"]
        kind = rng.choice(kinds)
        p = v.new()
        return (f"Add a parallel {kind}(3x3, stride 1) branch from the block input into the residual sum at "
                f"{v.desc(a)}, a cheap smoothing path next to the convs."), \
            [AddNode(id=p, op=f"{kind}(kernel_size=3)", inputs=[v.inp], outputs=[a])], a
    s = v.out_src()
    if s is None or s == v.inp or not v.is_c(s):
        raise NotApplicable("pooling_branch", "no residual Add and no C-channel node before the output")
    kind = rng.choice(["AvgPool2d", "MaxPool2d"])
    p, a = v.new(), v.new()
    return (f"Add a parallel {kind}(3x3) branch from the block input, summed with {v.desc(s)} in a new Add "
            f"(node {a}) before the output."), \
        [InsertOnEdge(src=s, dst=v.out, op="Add", id=a), AddNode(id=p, op=f"{kind}(kernel_size=3)", inputs=[v.inp],
                                                                  outputs=[a])], s


def _drop_path(v: View, rng: random.Random) -> Result:
    sites = [(s, a) for a in v.residual_adds() for s in dict.fromkeys(v.ins[a])
             if s != v.inp and v.op(s) != "droppath" and v.fmap(s)]
    if not sites:
        raise NotApplicable("drop_path", "no residual branch without DropPath")
    s, a = _pick(rng, sites)
    p = rng.choice([0.1, 0.2])
    d = v.new()
    return (f"Regularise the residual branch with stochastic depth: DropPath(p={p}) (node {d}) between {v.desc(s)} "
            f"and the residual {v.desc(a)}."), [InsertOnEdge(src=s, dst=a, op=f"DropPath(p={p})", id=d)], s


def _widen(v: View, rng: random.Random) -> Result:
    sites = []
    for n in sorted(v.nodes):
        op = v.op(n)
        if n not in v.ctx or op not in ("conv2d", "linear"):
            continue
        if op == "conv2d" and not v.ctx[n].p["groups"].eq(1):
            continue
        cur = n
        while True:
            cs = v.cons.get(cur, [])
            if len(cs) != 1 or len(v.ins.get(cs[0], [])) != 1:
                break
            cur = cs[0]
            if v.op(cur) in _ELEMENTWISE or (op == "linear" and v.op(cur) == "ln"):
                continue
            break
        if v.op(cur) != op or cur == n:
            continue
        if op == "conv2d" and not v.ctx[cur].p["groups"].eq(1):
            continue
        width = v.ctx[n].p["out_channels" if op == "conv2d" else "out_features"]
        wide = _scaled(width, 2)
        if wide and chan_expr(width) is not None and not width.is_const:
            sites.append((n, cur, chan_expr(width), wide))
    if not sites:
        raise NotApplicable("widen", "no conv (or linear) feeding another through element-wise ops only")
    n, nxt, old, wide = _pick(rng, sites)
    if v.op(n) == "conv2d":
        op = v.conv_like(n, out_channels=wide)
    else:
        node = v.nodes[n]
        vals = {k: show_value(x) for k, x in named_values(node, lookup(node.op)).items()}
        vals["out_features"] = wide
        op = "Linear(" + ",".join(f"{k}={x}" for k, x in vals.items()) + ")"
    back = chan_expr(v.ctx[nxt].out.dims[1 if v.op(nxt) == "conv2d" else -1])
    return (f"Widen the inner layer: {v.desc(n)} goes from {old} to {wide} channels, and the next layer, node {nxt}, "
            f"projects back to {back}."), [SetOp(id=n, op=op)], n


def _self_attention(v: View, rng: random.Random) -> Result:
    if any(v.op(n) == "multiply" for n in v.nodes):
        raise NotApplicable("self_attention", "the block already has a matmul attention")
    sites = v.branch_sites()
    if not sites:
        raise NotApplicable("self_attention", "no C-channel feature before a residual Add or the output")
    s, t = _pick(rng, sites)
    b = v.bias()
    q, k, val, rq, rk, rv, pq, att, sm, pa, o, back, a = (v.new() for _ in range(13))
    edits = [
        AddNode(id=q, op=conv_op("C/8", 1, bias=b), inputs=[s]),
        AddNode(id=k, op=conv_op("C/8", 1, bias=b), inputs=[s]),
        AddNode(id=val, op=conv_op("C", 1, bias=b), inputs=[s]),
        AddNode(id=rq, op="reshape(B,C/8,H*W)", inputs=[q]),
        AddNode(id=rk, op="reshape(B,C/8,H*W)", inputs=[k]),
        AddNode(id=rv, op="reshape(B,C,H*W)", inputs=[val]),
        AddNode(id=pq, op="permute(0,2,1)", inputs=[rq]),
        AddNode(id=att, op="multiply", inputs=[pq, rk]),
        AddNode(id=sm, op="softmax(dim=-1)", inputs=[att]),
        AddNode(id=pa, op="permute(0,2,1)", inputs=[sm]),
        AddNode(id=o, op="multiply", inputs=[rv, pa]),
        AddNode(id=back, op="reshape(B,C,H,W)", inputs=[o]),
        InsertOnEdge(src=s, dst=t, op="Add", id=a),
        AddEdge(src=back, dst=a),
    ]
    return (f"Add a non-local self-attention block on {v.desc(s)} before {v.desc(t)}: 1x1 query/key convs to C/8 "
            f"and a value conv to C, softmax attention over all positions, added back residually (Add node {a})."), \
        edits, s


@dataclass(frozen=True)
class Strategy:
    """One design idea: `propose(block, rng)` returns a Plan or raises NotApplicable."""

    name: str
    tags: tuple[str, ...]
    describe: str
    fn: Callable[[View, random.Random], Result] = field(repr=False)

    def propose(self, block: Block, rng: random.Random) -> Plan:
        v = View(block)
        summary, edits, site = self.fn(v, rng)
        return Plan(strategy=self.name, summary=summary, edits=edits, tags=list(self.tags), site=site)

    def try_propose(self, block: Block, rng: random.Random) -> Plan | None:
        try:
            return self.propose(block, rng)
        except NotApplicable:
            return None
        except Exception:  # noqa: BLE001 - a block the heuristic cannot read has no site for it
            return None

    def applies(self, block: Block) -> bool:
        return self.try_propose(block, random.Random(0)) is not None


def _s(name: str, tags: Iterable[str], describe: str, fn) -> Strategy:
    return Strategy(name, tuple(tags), describe, fn)


STRATEGIES: tuple[Strategy, ...] = (
    _s("se_attention", ["channel-attention"], "squeeze-and-excitation gate before the residual Add or output", _se),
    _s("spatial_attention", ["spatial-attention"], "CBAM spatial gate from channel mean/max maps", _spatial),
    _s("add_residual", ["residual"], "identity shortcut around the block or around a conv", _residual),
    _s("dense_connection", ["dense"], "concat an earlier and a later feature, 1x1 conv back", _dense),
    _s("bottleneck", ["bottleneck"], "3x3 conv C->C becomes 1x1 C/4, 3x3, 1x1 C", _bottleneck),
    _s("inverted_residual", ["inverted-residual", "depthwise-separable"],
       "1x1 expansion, depthwise conv, 1x1 linear projection", _inverted),
    _s("depthwise_separable", ["depthwise-separable"], "depthwise kxk conv then 1x1 pointwise conv", _separable),
    _s("dilated_conv", ["dilated"], "dilation=2 on a 3x3 conv or a parallel dilated branch", _dilated),
    _s("multi_branch", ["multi-branch", "kernel-size"], "parallel 1x1/3x3/5x5 branches summed or concatenated",
       _multi_branch),
    _s("kernel_size", ["kernel-size"], "3->5, 5->3, 7->5 or 3x3 -> 1x3 + 3x1", _kernel),
    _s("activation_swap", ["activation"], "ReLU<->GELU or a sigmoid-gated (SiLU) unit", _activation),
    _s("add_batchnorm", ["normalization"], "BatchNorm after a conv that lacks one", _batchnorm),
    _s("pre_activation", ["pre-activation", "normalization"], "BN-ReLU-Conv ordering", _preact),
    _s("grouped_conv", ["grouped-conv"], "groups=4 on a conv", _grouped),
    _s("pooling_branch", ["pooling-branch", "multi-branch"], "parallel 3x3 pool branch into the residual sum",
       _pool_branch),
    _s("drop_path", ["stochastic-depth", "residual"], "DropPath on the residual branch", _drop_path),
    _s("widen", ["width"], "inner conv to 2x width, the next conv projects back", _widen),
    _s("self_attention", ["self-attention"], "non-local attention over positions, added residually",
       _self_attention),
)

BY_NAME: dict[str, Strategy] = {s.name: s for s in STRATEGIES}


def applicable(block: Block) -> list[Strategy]:
    """Strategies that find a site in this block, in registry order."""
    return [s for s in STRATEGIES if s.applies(block)]


def propose(name: str, block: Block, rng: random.Random) -> Plan:
    return BY_NAME[name].propose(block, rng)


def choose(block: Block, rng: random.Random, tags_hint: list[str] | None = None,
           avoid: set[str] | None = None) -> Plan:
    """A plan for `block`, deterministic per rng state. Strategies named in `avoid` (already tried at
    this node) are skipped while others remain; among the rest, those matching the earliest
    possible tag of `tags_hint` are preferred. Raises NotApplicable when no strategy applies."""
    avoid = set(avoid or ())
    cands = applicable(block)
    if not cands:
        raise NotApplicable("choose", "no strategy finds a site in this block")
    fresh = [s for s in cands if s.name not in avoid] or cands
    pool = fresh
    for tag in tags_hint or ():
        match = [s for s in fresh if tag in s.tags]
        if match:
            pool = match
            break
    order = list(pool)
    rng.shuffle(order)
    for s in order:
        plan = s.try_propose(block, rng)
        if plan is not None:
            return plan
    raise NotApplicable("choose", "no strategy produced a plan")


# ------------------------------------------------------------------------------ fault injection

FAULT_KINDS: tuple[str, ...] = ("drop_input", "literal_channels", "group_typo")
_MULTI = ("add", "mul", "concat", "multiply")
_OUTC = re.compile(r"out_channels=(C|dim)(?=[,)])")
_ANYC = re.compile(r"out_channels=([^,)]*[Cd][^,)]*)(?=[,)])")


def _op_of(e) -> str | None:
    return getattr(e, "op", None) if isinstance(e, (AddNode, SetOp, InsertOnEdge)) else None


def _with_op(e, op: str):
    return e.model_copy(update={"op": op})


def _fault_drop(plan: Plan, rng: random.Random, block: Block | None) -> list[Edit] | None:
    if block is not None:
        try:
            child = apply_edits(block, plan.edits)
        except BlockError:
            return None
        before = block.node_map
        multi = [n.id for n in child.nodes if n.op.lower() in _MULTI and len(child.inputs.get(n.id, [])) >= 2]
        touched = [n for n in multi if n not in before or before[n] != child.node_map[n]
                   or block.inputs.get(n) != child.inputs.get(n)]
        pool = touched or multi
        if not pool:
            return None
        n = pool[rng.randrange(len(pool))]
        srcs = list(dict.fromkeys(child.inputs[n]))
        return list(plan.edits) + [RemoveEdge(src=srcs[rng.randrange(len(srcs))], dst=n)]
    multi_ids = {e.id for e in plan.edits if _op_of(e) and e.op.split("(")[0].lower() in _MULTI and e.id is not None}
    for i, e in enumerate(plan.edits):
        if isinstance(e, AddEdge) and e.dst in multi_ids:
            return plan.edits[:i] + plan.edits[i + 1:]
    for i, e in enumerate(plan.edits):
        if isinstance(e, AddNode) and e.op.split("(")[0].lower() in _MULTI and len(e.inputs) >= 2:
            return plan.edits[:i] + [e.model_copy(update={"inputs": e.inputs[:-1]})] + plan.edits[i + 1:]
    return None


def _fault_literal(plan: Plan, rng: random.Random, block: Block | None) -> list[Edit] | None:
    for pat in (_OUTC, _ANYC):
        idx = [i for i, e in enumerate(plan.edits) if _op_of(e) and pat.search(e.op)]
        if idx:
            i = idx[rng.randrange(len(idx))]
            lit = rng.choice([32, 64, 128])
            e = plan.edits[i]
            return plan.edits[:i] + [_with_op(e, pat.sub(f"out_channels={lit}", e.op, count=1))] + plan.edits[i + 1:]
    return None


def _fault_group(plan: Plan, rng: random.Random, block: Block | None) -> list[Edit] | None:
    idx = [i for i, e in enumerate(plan.edits) if _op_of(e) and "groups=" in e.op]
    if idx:
        i = idx[rng.randrange(len(idx))]
        e = plan.edits[i]
        return plan.edits[:i] + [_with_op(e, e.op.replace("groups=", "group=", 1))] + plan.edits[i + 1:]
    idx = [i for i, e in enumerate(plan.edits) if _op_of(e) and e.op.lower().startswith("conv2d(")]
    if idx:
        i = idx[rng.randrange(len(idx))]
        e = plan.edits[i]
        return plan.edits[:i] + [_with_op(e, e.op[:-1] + ",group=4)")] + plan.edits[i + 1:]
    return None


_FAULTS = {"drop_input": _fault_drop, "literal_channels": _fault_literal, "group_typo": _fault_group}


def inject_fault(plan: Plan, rng: random.Random, kind: str | None = None, block: Block | None = None) -> Plan:
    """The plan with one typical LLM mistake: an Add/Mul/concat missing one input edge, a literal
    channel count instead of C, or `group=` for `groups=`. `kind` picks the mistake (default: drawn
    by rng among those the plan allows); with `block`, `drop_input` removes an input of a
    multi-input node of the resulting block. Whether to call this at all is the caller's choice.
    Returns the plan unchanged (fault None) when no mistake of that kind fits it."""
    kinds = [kind] if kind else list(FAULT_KINDS)
    if not kind:
        rng.shuffle(kinds)
    for k in kinds:
        edits = _FAULTS[k](plan, rng, block)
        if edits is not None:
            return plan.model_copy(update={"edits": edits, "fault": k})
    return plan
