"""Macro networks (DESIGN §3.6): how stem, base and downsample blocks stack into a network.

A network is a list of sections, each one block at concrete channel and spatial sizes. The head
is a block too, so cost and compilation treat every part alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Architecture, Block, parse_block

MACROS = ("nader", "nb201")


@dataclass(frozen=True)
class DatasetShape:
    """What the network needs to know of a dataset: classes, image side, default FLOPs budget (MACs)."""

    name: str
    num_classes: int
    image_size: int
    max_flops: int
    in_channels: int = 3


DATASETS: dict[str, DatasetShape] = {
    "cifar10": DatasetShape("cifar10", 10, 32, 200_000_000),
    "cifar100": DatasetShape("cifar100", 100, 32, 200_000_000),
    "imagenet16-120": DatasetShape("imagenet16-120", 120, 16, 50_000_000),
    # 8x8 digits: CIFAR's budget scaled by image area.
    "digits": DatasetShape("digits", 10, 8, 12_500_000),
}


class MacroError(ValueError):
    """Unknown macro or dataset, or a network that cannot be laid out."""


def dataset_shape(name: str | DatasetShape) -> DatasetShape:
    if isinstance(name, DatasetShape):
        return name
    try:
        return DATASETS[name]
    except KeyError:
        raise MacroError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}") from None


# The base block a run starts from in each macro: NADER's ResNet basic block; NB201's ResNet cell.
DEFAULT_ROOTS = {
    "nader": """##ResNetBasic##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3)
3:BN
4:ReLU
5:Conv2d(out_channels=C,kernel_size=3)
6:BN
7:Add
8:ReLU
0->2
2->3
3->4
4->5
5->6
6,0->7
7->8
8->1
""",
    "nb201": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
}

NADER_STEM = parse_block("""##Stem##
0:input
1:output
2:Conv2d(out_channels=dim,kernel_size=3)
3:BN
4:ReLU
0->2
2->3
3->4
4->1
""")

NADER_DOWNSAMPLE = parse_block("""##ResNetReduction##
0:input
1:output
2:Conv2d(out_channels=dim,kernel_size=3,stride=2)
3:BN
4:ReLU
5:Conv2d(out_channels=dim,kernel_size=3)
6:BN
7:AvgPool2d(kernel_size=2,stride=2)
8:Conv2d(out_channels=dim,kernel_size=1)
9:Add
10:ReLU
0->2
2->3
3->4
4->5
5->6
0->7
7->8
6,8->9
9->10
10->1
""")

NB201_STEM = parse_block("""##NB201Stem##
0:input
1:output
2:Conv2d(out_channels=dim,kernel_size=3,bias=False)
3:BN
0->2
2->3
3->1
""")

# NAS-Bench-201's ResNetBasicblock with stride 2: ReLU-Conv-BN twice, avg-pool + 1x1 conv shortcut.
NB201_REDUCTION = parse_block("""##NB201Reduction##
0:input
1:output
2:ReLU
3:Conv2d(out_channels=dim,kernel_size=3,stride=2,bias=False)
4:BN
5:ReLU
6:Conv2d(out_channels=dim,kernel_size=3,bias=False)
7:BN
8:AvgPool2d(kernel_size=2,stride=2)
9:Conv2d(out_channels=dim,kernel_size=1,bias=False)
10:Add
0->2
2->3
3->4
4->5
5->6
6->7
0->8
8->9
7,9->10
10->1
""")

# Heads take C = last width, dim = class count.
_POOL_HEAD = """0:input
1:output
{pre}2:AdaptiveAvgPool2d(output_size=1)
3:reshape(B,C)
4:Linear(out_features=dim)
{pre_edges}2->3
3->4
4->1
"""
NADER_HEAD = parse_block("##Head##\n" + _POOL_HEAD.format(pre="", pre_edges="0->2\n"))
NB201_HEAD = parse_block("##NB201Head##\n" + _POOL_HEAD.format(
    pre="5:BN\n6:ReLU\n", pre_edges="0->5\n5->6\n6->2\n"))


@dataclass(frozen=True)
class Section:
    """One block placed in the network: `prefix` names its modules."""

    prefix: str
    block: Block
    kind: str  # base | stem | downsample | head
    c_in: int
    c_out: int
    size: int  # input height = width


@dataclass(frozen=True)
class Layout:
    macro: str
    widths: tuple[int, int, int]
    dataset: DatasetShape
    sections: tuple[Section, ...]


def layout(arch: Block | Architecture, macro: str, dataset: str | DatasetShape, x: int | None = None,
           cells: int = 5) -> Layout:
    """Sections of the network. `nader` uses widths [x,2x,4x] (x required); `nb201` is the
    NAS-Bench-201 skeleton at C=16 whatever x says. A lone base block gets the macro's stem and
    downsample blocks; an Architecture brings its own."""
    ds = dataset_shape(dataset)
    if macro not in MACROS:
        raise MacroError(f"unknown macro {macro!r}; valid macros: {', '.join(MACROS)}")
    if macro == "nb201":
        x = 16
    elif x is None or x < 1:
        raise MacroError("macro 'nader' needs a base width x >= 1 (see graphs.cost.fit_width)")
    if isinstance(arch, Architecture):
        base, stem, down = arch.base, arch.stem, arch.downsample
    else:
        base = arch
        stem, down = (NB201_STEM, NB201_REDUCTION) if macro == "nb201" else (NADER_STEM, NADER_DOWNSAMPLE)
    head = NB201_HEAD if macro == "nb201" else NADER_HEAD
    widths = (x, 2 * x, 4 * x)
    size = ds.image_size
    secs = [Section("stem", stem, "stem", ds.in_channels, widths[0], size)]
    for stage, w in enumerate(widths):
        if stage:
            secs.append(Section(f"down{stage}", down, "downsample", widths[stage - 1], w, size))
            size //= 2
        secs += [Section(f"s{stage + 1}c{i}", base, "base", w, w, size) for i in range(cells)]
    secs.append(Section("head", head, "head", widths[-1], ds.num_classes, size))
    return Layout(macro, widths, ds, tuple(secs))
