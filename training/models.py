"""Models from block text: the bridge between graphs/ (block DAG, macro networks) and the trainer.

`BlockNetwork` is a picklable zero-arg model factory (the pool launcher sends it to spawned workers):
it holds the architecture as TEXT, never a built module, and compiles the network only when called,
inside the worker, under the trial's seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

__all__ = ["BlockNetwork", "block_network_from_file", "validate_text", "MACROS"]

MACROS = ("nader", "nb201")


def _parse(text: str):
    from graphs.ir import parse

    return parse(text)


def validate_text(text: str) -> list[dict]:
    """Every validator issue of a base block or a three-section architecture, as JSON-ready dicts
    (`node`, `code`, `message`, plus `section` for architectures); empty when valid."""
    from graphs.errors import BlockError
    from graphs.ir import Block
    from graphs.validate import validate

    try:
        obj = _parse(text)
    except BlockError as e:
        return [i.model_dump(mode="json") for i in e.issues]
    if isinstance(obj, Block):
        return [i.model_dump(mode="json") for i in validate(obj, "base")]
    out: list[dict] = []
    for section, blk in (("base", obj.base), ("stem", obj.stem), ("downsample", obj.downsample)):
        out += [{**i.model_dump(mode="json"), "section": section} for i in validate(blk, section)]
    return out


@dataclass(frozen=True)
class BlockNetwork:
    """A network compiled from block text: a lone base block (placed in the macro's stem and
    downsample blocks) or a base/stem/downsample architecture.

    `macro` is `nader` (widths [x, 2x, 4x]; `x=None` fits x to the default budget with
    graphs.cost.fit_width) or `nb201` (the NAS-Bench-201 skeleton, C=16; x is ignored).
    `dataset` is a graphs.macro.DATASETS name: it fixes the class count and the image size.
    Calling it returns a fresh `nn.Module` (initialised under the caller's torch seed).
    """

    text: str
    macro: str = "nader"
    dataset: str = "cifar10"
    x: int | None = None

    def __post_init__(self) -> None:
        if self.macro not in MACROS:
            raise ValueError(f"unknown macro {self.macro!r}; valid macros: {', '.join(MACROS)}")

    @classmethod
    def from_file(cls, path: str | Path, macro: str = "nader", dataset: str = "cifar10",
                  x: int | None = None) -> "BlockNetwork":
        return cls(Path(path).read_text(), macro, dataset, x)

    @classmethod
    def from_nb201(cls, arch: str, dataset: str = "cifar10") -> "BlockNetwork":
        """An NB201 arch string (`|nor_conv_3x3~0|+|...|`) as a cell of the nb201 skeleton."""
        from graphs.nb201 import arch_to_block

        return cls(str(arch_to_block(arch)), "nb201", dataset)

    def parsed(self):
        """The graphs Block or Architecture (BlockError when the text does not parse)."""
        return _parse(self.text)

    def issues(self) -> list[dict]:
        """Validator issues (empty when the text is a valid block or architecture)."""
        return validate_text(self.text)

    def checked(self):
        """The parsed block or architecture; BlockError with every issue when it is not valid."""
        from graphs.errors import BlockError, Issue

        issues = self.issues()
        if issues:
            raise BlockError([Issue(**{k: v for k, v in i.items() if k != "section"}) for i in issues])
        return self.parsed()

    def resolved(self) -> "BlockNetwork":
        """A copy with the width fixed (fit_width for `nader` without x), so workers do not refit.
        Raises BlockError (invalid text) or graphs.cost.BudgetError (cannot fit)."""
        arch = self.checked()
        if self.macro != "nader" or self.x is not None:
            return self
        from graphs.cost import fit_width

        return dataclasses.replace(self, x=fit_width(arch, self.dataset).widths[0])

    def compiled(self):
        """The graphs.compile.Compiled network (module, layout, specs, analytic cost)."""
        from graphs.compile import build_model

        return build_model(self.checked(), self.macro, self.dataset, self.x)

    def __call__(self) -> nn.Module:
        return self.compiled().module


def block_network_from_file(path: str | Path, macro: str = "nader", dataset: str = "cifar10",
                            x: int | None = None) -> BlockNetwork:
    """`BlockNetwork.from_file` as a function."""
    return BlockNetwork.from_file(path, macro, dataset, x)
