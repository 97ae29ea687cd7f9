"""Blind cell spaces (DESIGN §10): the NB201 ops shown to designers under neutral names.

A designer that has read NAS-Bench-201's results (any LLM today) can find its optimum from memory.
In a blind space every op is shown as one of `op_a` ... `op_e`, shuffled per seed, with nothing that
says what it computes, so that only search can find the good cells. `BlindView` is the one
translation between the two vocabularies: `encode` turns any text or JSON value a designer would
see into the blind view (cell blocks become blind arch strings, op names become neutral names, and
words that describe an op are masked), `decode` turns what a designer writes back into real names.
Pure: a view is a frozen value made from a seed.

>>> view = BlindView.for_seed(0)
>>> arch = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"
>>> blind = view.encode(arch)
>>> any(op in blind for op in ("nor_conv", "skip", "avg_pool", "none"))
False
>>> view.decode(blind) == arch
True
>>> view.encode("set edge 2<-1: none -> nor_conv_1x1") == f"set edge 2<-1: {view.blind('none')} -> {view.blind('nor_conv_1x1')}"
True
>>> view.encode("children: none yet")  # `none` is an op only where an op stands
'children: none yet'
>>> view.encode("a 3x3 convolution with ReLU")
'a [hidden] [hidden] with [hidden]'
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from .nb201 import NB201_OPS

__all__ = ["BLIND_OPS", "HIDDEN", "SPACE_NAME", "BlindView", "REVEALING_TERMS"]

BLIND_OPS: tuple[str, ...] = ("op_a", "op_b", "op_c", "op_d", "op_e")
HIDDEN = "[hidden]"  # what a masked word becomes

# Words that say what an op computes (registry names of the ops cells are built of, sizes, and the
# ordinary words for them): masked wherever they would reach a designer of a blind space.
REVEALING_TERMS: tuple[str, ...] = (
    r"\w*conv\w*", r"\w*pool\w*", r"relu", r"bn", r"batch[\s_-]*norm\w*", r"\d+\s*[x×]\s*\d+", r"skip\w*",
    r"identity", r"shortcut\w*", r"residual\w*", r"zero", r"kernel\w*", r"plain edge", r"no edge",
    r"nor_\w*", r"avg_\w*",  # real names cut short by a shortened line ("avg_po…")
)
_REVEALING = re.compile(r"\b(?:" + "|".join(REVEALING_TERMS) + r")\b", re.I)
# The four names no ordinary text contains; `none` is an op name only where an op stands (below).
_DISTINCT = [op for op in NB201_OPS if op != "none"]
_DISTINCT_RE = re.compile(r"\b(" + "|".join(map(re.escape, _DISTINCT)) + r")\b")
_OP_WORD = r"([A-Za-z_][\w]*)"
_IN_ARCH = re.compile(r"(?<=\|)" + _OP_WORD + r"(?=~\d\|)")              # |op~j|
_AFTER_EDGE = re.compile(r"(\d\s*<-\s*\d\s*:\s*)" + _OP_WORD)              # "2<-1: op" (cell lines, moves)
_AFTER_ARROW = re.compile(r"(:\s*\S+\s*->\s*)" + _OP_WORD)                 # "...: old -> new" (moves)
# A block in NADER's text format: a `##Name##` header and node, edge and comment lines.
_BLOCK = re.compile(r"##[^#\n]*##[ \t]*\n(?:[ \t]*(?:\d+[ \t]*:[^\n]*|[\d, \t]+->[ \t]*\d+[ \t]*|#[^\n]*)?\n)*"
                    r"(?:[ \t]*(?:\d+[ \t]*:[^\n]*|[\d, \t]+->[ \t]*\d+[ \t]*))?")
_BLIND_RE = re.compile(r"\b(" + "|".join(BLIND_OPS) + r")\b")
# A list of op names ("none, skip_connect, ...", "'none', 'op_e' or 'op_b'"): in NB201's order it
# would give the mapping away, so a list is shown in the neutral names' own order.
_ANY_OP = r"'?\b(?:" + "|".join(map(re.escape, NB201_OPS)) + r")\b'?"
_OP_LIST = re.compile(_ANY_OP + r"(?:(?:\s*,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+)" + _ANY_OP + r")+")
_SPACE_NAME = re.compile(r"\b(?:nb201|nas-bench-201)\b", re.I)  # the space's name says which ops it has
SPACE_NAME = "cell"  # what a blind space is called instead
_NOT_AN_OP = "unknown_op"  # what a real op name a designer of a blind space writes becomes


@dataclass(frozen=True)
class BlindView:
    """The neutral name of each NB201 op (`pairs`: (real, blind) in NB201_OPS order)."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def for_seed(cls, seed: int) -> "BlindView":
        """The run's view: the neutral names shuffled by `seed` (another seed, another naming)."""
        names = list(BLIND_OPS)
        random.Random(f"blind-ops:{seed}").shuffle(names)
        return cls(tuple(zip(NB201_OPS, names)))

    @property
    def ops(self) -> tuple[str, ...]:
        """The neutral names in their own order (which says nothing of NB201's)."""
        return tuple(sorted(b for _, b in self.pairs))

    def blind(self, op: str) -> str:
        return dict(self.pairs)[op]

    def real(self, name: str) -> str:
        return {b: r for r, b in self.pairs}[name]

    def legend(self) -> str:
        """Both names, for people: "op_a = nor_conv_1x1, ..." in neutral-name order."""
        return ", ".join(f"{name} = {self.real(name)}" for name in self.ops)

    # ------------------------------------------------------------------ real -> blind
    def encode(self, text: str) -> str:
        """`text` as a designer of the blind space may see it. A JSON object or list (a tool result,
        a schema) is encoded value by value and written back as JSON."""
        if not isinstance(text, str) or not text:
            return text
        data = _container(text)
        if data is not None:
            return json.dumps(self.encode_value(data), ensure_ascii=False)
        return self._encode_text(text)

    def encode_value(self, value: Any) -> Any:
        """A JSON-like value with every string encoded; a string that is exactly an op name (a schema's
        enum, an edit's `op`) is that op, `none` included."""
        if isinstance(value, dict):
            return {k: self.encode_value(v) for k, v in value.items()}
        if isinstance(value, list):
            if len(value) > 1 and all(isinstance(v, str) and v in NB201_OPS for v in value):
                return sorted(self.blind(v) for v in value)  # an enum: not in NB201's order
            return [self.encode_value(v) for v in value]
        if isinstance(value, str):
            if value in NB201_OPS:
                return self.blind(value)
            return self.encode(value)
        return value

    def _encode_text(self, text: str) -> str:
        text = _BLOCK.sub(lambda m: self._block(m.group(0)), text)
        mapping = dict(self.pairs)
        text = _OP_LIST.sub(lambda m: ", ".join(sorted(mapping[op] for op in re.findall(
            r"\b(" + "|".join(NB201_OPS) + r")\b", m.group(0)))), text)
        text = _SPACE_NAME.sub(SPACE_NAME, text)

        def op(m: re.Match, group: int = 1) -> str:
            return mapping.get(m.group(group), m.group(group))

        text = _IN_ARCH.sub(op, text)
        text = _AFTER_EDGE.sub(lambda m: m.group(1) + op(m, 2), text)
        text = _AFTER_ARROW.sub(lambda m: m.group(1) + op(m, 2), text)
        text = _DISTINCT_RE.sub(op, text)
        return _REVEALING.sub(HIDDEN, text)

    def _block(self, text: str) -> str:
        """A cell block as its blind arch string (a trailing newline kept); any other block is left
        to the masking of revealing words."""
        from .space import block_to_arch  # space builds on nb201 and the validator; late
        from .ir import parse_block

        try:
            arch = block_to_arch(parse_block(text))
        except Exception:  # noqa: BLE001 - not a readable block: it is only text to mask
            arch = None
        if arch is None:
            return text
        return arch + ("\n" if text.endswith("\n") else "")

    # ------------------------------------------------------------------ blind -> real
    def decode(self, text: str) -> str:
        """What a designer of the blind space wrote (tool arguments), in real op names: a JSON object
        or list value by value. Neutral names become real ones; a real op name the designer wrote
        becomes `unknown_op`, so that a probe with a remembered name learns nothing."""
        if not isinstance(text, str) or not text:
            return text
        data = _container(text)
        if data is not None:
            return json.dumps(self.decode_value(data), ensure_ascii=False)
        text = _DISTINCT_RE.sub(_NOT_AN_OP, text)
        text = _IN_ARCH.sub(lambda m: _NOT_AN_OP if m.group(1) == "none" else m.group(1), text)
        back = {b: r for r, b in self.pairs}
        return _BLIND_RE.sub(lambda m: back[m.group(1)], text)

    def decode_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.decode_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.decode_value(v) for v in value]
        if isinstance(value, str):
            return _NOT_AN_OP if value in NB201_OPS else self.decode(value)
        return value

    def reveals(self, text: str) -> list[str]:
        """The real op names (`none` where an op stands, or as a whole JSON string), the space's
        name and revealing words in `text`: empty for a blind text. For checks."""
        text = text or ""
        found = [m.group(0) for m in _DISTINCT_RE.finditer(text)]
        found += [m.group(1) for m in _IN_ARCH.finditer(text) if m.group(1) in NB201_OPS]
        found += [m.group(2) for m in _AFTER_EDGE.finditer(text) if m.group(2) == "none"]
        found += re.findall(r'"none"', text) + [m.group(0) for m in _SPACE_NAME.finditer(text)]
        return found + [m.group(0) for m in _REVEALING.finditer(text)]


def _container(text: str) -> Any:
    """The parsed JSON object or list that `text` is, else None."""
    head = text.lstrip()[:1]
    if head not in ("{", "["):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, (dict, list)) else None
