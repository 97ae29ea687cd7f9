"""Block identity (DESIGN §3.5): node labels with normalised parameters, a Weisfeiler–Lehman
canonical hash, and exact labelled isomorphism to confirm equal hashes.

- `node_label(node)`: the op's registry name and every schema parameter with its default filled in;
  integer expressions are reduced to a fingerprint (their values at three fixed, unrelated
  assignments of B, C, dim, H, W), so `C*1` = `C`, `2*C` = `C+C` and `kernel_size=3` = `(3,3)`.
  Unknown ops and unknown parameters keep their raw text.
- `canonical_hash(block)`: WL refinement over in- and out-neighbourhoods, with input positions for
  ordered ops (`concat`, `multiply`) and multisets otherwise (multi-edges count), at most
  `WL_ITERATIONS` rounds; a blake2b digest of the refinement, so the hash is the same in every
  process. Node ids, line order and the block name do not enter it. Equal hashes do not prove
  isomorphism (WL cannot tell some regular structures apart): confirm with `same_block`.
- `is_isomorphic(a, b)`: exact check with networkx; `same_block(a, b)` = equal hashes and isomorphic.

The hash does not know the block's kind: `dim` and `C` are different symbols to it even where a
base block makes them equal.
"""
from __future__ import annotations

from hashlib import blake2b
from operator import concat as _concat
from weakref import WeakKeyDictionary

from .expr import Expr, show_value
from .infer import named_values
from .ir import Block, Node
from .registry import DEFAULT_REGISTRY, REQUIRED, Param, Registry, resolve_registry

__all__ = ["node_label", "canonical_hash", "is_isomorphic", "same_block", "PROBES", "WL_ITERATIONS"]

# Three assignments with no linear relation between symbols, mixing odd and even values so that
# floor divisions which differ as functions differ here too.
PROBES: tuple[dict[str, int], ...] = (
    {"B": 3, "C": 37, "dim": 53, "H": 29, "W": 23},
    {"B": 2, "C": 120, "dim": 44, "H": 18, "W": 31},
    {"B": 7, "C": 256, "dim": 160, "H": 56, "W": 14},
)
WL_ITERATIONS = 3  # at most; refinement stops earlier when the partition is stable or discrete
_DIGEST = 8  # bytes of a label's digest (initial colours are ranks of these)
_CACHE_MAX = 200_000

# Per registry: (op, params, args) -> (label, initial digest, ordered). Labels depend on the registry,
# so each has its own table; the default one's is kept at hand for the common path.
_cache: dict[tuple, tuple[str, bytes, bool]] = {}
_other_caches: "WeakKeyDictionary[Registry, dict]" = WeakKeyDictionary()


def _cache_for(reg: Registry) -> dict:
    if reg is DEFAULT_REGISTRY:
        return _cache
    table = _other_caches.get(reg)
    if table is None:
        table = _other_caches[reg] = {}
    return table


# ---------------------------------------------------------------- labels

def _fingerprint(e: Expr) -> str:
    """An integer expression as its values at the probes: one int if constant."""
    try:
        vals = [e.evaluate(p) for p in PROBES]
    except (ZeroDivisionError, KeyError, TypeError, RecursionError):
        return f"?{e.text}"
    if vals[0] == vals[1] == vals[2]:
        return str(vals[0])
    return "e" + ".".join(map(str, vals))


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, Expr):
        return _fingerprint(v)
    if isinstance(v, tuple):
        return "(" + ",".join(_scalar(x) for x in v) + ")"
    return str(v)


def _norm(v, p: Param) -> str:
    """A parameter value in normal form for its kind (mirrors `infer.resolve` without failing)."""
    kind = p.kind
    if kind == "pair":
        if isinstance(v, tuple):
            return _scalar(v)
        s = _scalar(v)
        return f"({s},{s})"
    if kind == "bool":
        if isinstance(v, Expr) and v.text in ("0", "1"):
            return "True" if v.text == "1" else "False"
        return _scalar(v)
    if kind == "float":
        if isinstance(v, Expr) and not v.symbols:
            try:
                return repr(float(v.evaluate(PROBES[0])))
            except (ZeroDivisionError, TypeError, RecursionError):
                return f"?{v.text}"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return repr(float(v))
        return _scalar(v)
    if kind in ("axes", "shape"):
        return _scalar(v if isinstance(v, tuple) else (v,))
    return _scalar(v)  # channels, int, axis


def _make_label(node: Node, reg: Registry) -> str:
    spec = reg.lookup(node.op)
    if spec is None:
        parts = [show_value(a) for a in node.args] + [f"{k}={show_value(v)}" for k, v in node.params]
        return f"{node.op}(" + ",".join(parts) + ")" if parts else node.op
    given = named_values(node, spec)
    parts = []
    for p in spec.params:
        v = given.get(p.name, p.default)
        if v is REQUIRED:
            continue
        parts.append(f"{p.name}={_norm(v, p)}")
    names = spec.param_names
    parts += sorted(f"{k}={show_value(v)}" for k, v in given.items() if k not in names)
    if node.args and not spec.varargs and len(node.args) > len(spec.params):
        parts += [f"_{i}={show_value(a)}" for i, a in enumerate(node.args) if i >= len(spec.params)]
    return f"{spec.name}(" + ",".join(parts) + ")" if parts else spec.name


def _entry(node: Node, reg: Registry = DEFAULT_REGISTRY) -> tuple[str, bytes, bool]:
    """Label, its digest, and whether input order matters; shared by all nodes with the same op
    text and values (a table keyed by content, so it can never go stale)."""
    cache = _cache_for(reg)
    key = (node.op, node.params, node.args)
    try:
        entry = cache.get(key)
    except TypeError:  # an unhashable value: compute without the table
        key, entry = None, None
    if entry is None:
        label = _make_label(node, reg)
        spec = reg.lookup(node.op)
        entry = (label, blake2b(label.encode("utf-8", "surrogatepass"), digest_size=_DIGEST).digest(),
                 bool(spec and spec.ordered))
        if key is not None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[key] = entry
    return entry


def node_label(node: Node, registry: Registry | None = None) -> str:
    """Canonical op name and normalised parameters, e.g. `Conv2d(out_channels=e37.120.256,...)`."""
    return _entry(node, resolve_registry(registry))[0]


# ---------------------------------------------------------------- WL hash

_UNDEFINED = ("<undefined>", blake2b(b"<undefined>", digest_size=_DIGEST).digest(), False)


_IN = "\0"  # tag of an in-edge of an unordered node
_OUT = "\1"  # tag of an out-edge to an unordered consumer
_ORDERED_OUT = 2  # + position: an out-edge into an ordered consumer
_ORDERED_IN = 0x10000  # + position: an in-edge of an ordered node


def _structure(block: Block, reg: Registry):
    """Node entries and, per node, its neighbours: their indices and a tag per edge saying
    in-edge or out-edge, with the input position where the consumer's input order matters."""
    nodes = block.nodes
    entries = []
    get = _cache_for(reg).get
    for nd in nodes:
        try:
            e = get((nd.op, nd.params, nd.args))
        except TypeError:
            e = None
        entries.append(e if e is not None else _entry(nd, reg))
    index = {nd.id: i for i, nd in enumerate(nodes)}
    nbj: list[list[int]] = [[] for _ in nodes]
    nbt: list[list[str]] = [[] for _ in nodes]
    seen: dict[int, int] = {}  # inputs met so far, per ordered node
    for a, b in block.edges:
        ia = index.get(a)
        if ia is None:
            ia = index[a] = len(entries)
            entries.append(_UNDEFINED); nbj.append([]); nbt.append([])
        ib = index.get(b)
        if ib is None:
            ib = index[b] = len(entries)
            entries.append(_UNDEFINED); nbj.append([]); nbt.append([])
        nbj[ib].append(ia)
        nbj[ia].append(ib)
        if entries[ib][2]:
            p = seen.get(ib, 0)
            seen[ib] = p + 1
            nbt[ib].append(chr(_ORDERED_IN + p))
            nbt[ia].append(chr(_ORDERED_OUT + p))
        else:
            nbt[ib].append(_IN)
            nbt[ia].append(_OUT)
    return entries, nbj, nbt


def canonical_hash(block: Block, iterations: int = WL_ITERATIONS, registry: Registry | None = None) -> str:
    """Weisfeiler–Lehman hash of the labelled multigraph (32 hex characters).

    A node's signature is its colour and the sorted multiset of its neighbours' colours, each
    tagged as in-edge or out-edge, with the input position where the consumer's input order
    matters (`concat`, `multiply`). Colours are compressed to ranks within the block at each round
    (ranks of sorted signatures, so they depend only on the graph, never on node ids), one
    character each. The hash digests the sorted initial label digests, each round's sorted
    signature table and the final colour multiset: equal hashes mean equal refinements.

    Refinement stops when the partition is stable (the last table is then the quotient of the
    final partition), after `iterations` rounds, or when every node has its own colour: then the
    adjacency written in those colours is appended, a complete canonical form of the block.
    """
    entries, nbj, nbt = _structure(block, resolve_registry(registry))
    digests = sorted({e[1] for e in entries})
    rank0 = {d: chr(k) for k, d in enumerate(digests)}
    cur = [rank0[e[1]] for e in entries]
    n = len(cur)
    cert = [b"".join(digests).hex(), chr(n), chr(len(block.edges))]
    classes = len(digests)
    cnt = [chr(len(j)) for j in nbj]
    for _ in range(iterations):
        get = cur.__getitem__
        sig = [c + k + "".join(sorted(map(_concat, map(get, js), ts))) for c, k, js, ts in zip(cur, cnt, nbj, nbt)]
        table = sorted(set(sig))
        cert.append(chr(len(table)))
        cert.extend(table)
        if len(table) == classes:  # stable
            break
        classes = len(table)
        rank = {s: chr(k) for k, s in enumerate(table)}
        cur = list(map(rank.__getitem__, sig))
        if classes == n:  # discrete: one colour per node; append the adjacency in these colours
            get = cur.__getitem__
            adj = [c + k + "".join(sorted(map(_concat, map(get, js), ts))) for c, k, js, ts in zip(cur, cnt, nbj, nbt)]
            adj.sort()
            cert.append("\uffff")
            cert.extend(adj)
            break
    cur.sort()
    cert.extend(cur)
    return blake2b("".join(cert).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# ---------------------------------------------------------------- isomorphism

def _nx_graph(block: Block, reg: Registry):
    """The block as a labelled MultiDiGraph, kept on the (immutable) block for repeated checks
    (for the default registry; labels under another registry are built each time)."""
    if reg is not DEFAULT_REGISTRY:
        return _make_nx_graph(block, reg)
    g = block.__dict__.get("_nx_graph")
    if g is None:
        g = block.__dict__["_nx_graph"] = _make_nx_graph(block, reg)
    return g


def _make_nx_graph(block: Block, reg: Registry):
    import networkx as nx

    g = nx.MultiDiGraph()
    for n in block.nodes:
        label, _, o = _entry(n, reg)
        g.add_node(n.id, label=label, ordered=o)
    defined = block.node_map
    for nid in {x for e in block.edges for x in e if x not in defined}:
        g.add_node(nid, label=_UNDEFINED[0], ordered=False)
    seen: dict[int, int] = {}
    for a, b in block.edges:
        p = seen.get(b, 0)
        seen[b] = p + 1
        g.add_edge(a, b, pos=p if g.nodes[b]["ordered"] else -1)
    return g


def _node_match(x: dict, y: dict) -> bool:
    return x["label"] == y["label"]


def _edge_match(x: dict, y: dict) -> bool:
    # MultiDiGraph: all parallel edges u->v, keyed; compare their positions as multisets.
    return sorted(d["pos"] for d in x.values()) == sorted(d["pos"] for d in y.values())


def is_isomorphic(a: Block, b: Block, registry: Registry | None = None) -> bool:
    """Exact labelled isomorphism: node labels equal, edge multiplicities equal, and input
    positions equal on ordered ops."""
    import networkx as nx

    reg = resolve_registry(registry)
    if a is b:
        return True
    if len(a.nodes) != len(b.nodes) or len(a.edges) != len(b.edges):
        return False
    if sorted(_entry(n, reg)[1] for n in a.nodes) != sorted(_entry(n, reg)[1] for n in b.nodes):
        return False
    return nx.is_isomorphic(_nx_graph(a, reg), _nx_graph(b, reg), node_match=_node_match, edge_match=_edge_match)


def same_block(a: Block, b: Block, registry: Registry | None = None) -> bool:
    """Equal canonical hashes, confirmed by exact isomorphism."""
    return (canonical_hash(a, registry=registry) == canonical_hash(b, registry=registry)
            and is_isomorphic(a, b, registry))
