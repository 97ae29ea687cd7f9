"""Cost model and budget fitting: the reference counts, analytic vs measured on built modules."""
import pytest
import torch

from graphs.compile import build_model, count_params
from graphs.cost import Budget, BudgetError, fit_width, network_cost, section_cost
from graphs.ir import parse_block
from graphs.macro import Section
from mac_counter import count_macs
from conftest import CORPUS

NB201_ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NB201_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def block(name):
    return parse_block((CORPUS / f"{name}.txt").read_text())


@pytest.mark.parametrize("name,kind,c_in,c_out,params", [
    ("resnet_basic", "base", 128, 128, 295_680),
    ("bottleneck", "base", 128, 128, 17_984),
    ("resnet_reduction", "downsample", 128, 256, 919_296),
    ("convnext", "base", 128, 128, 138_368),
])
def test_reference_parameter_counts(name, kind, c_in, c_out, params):
    assert section_cost(Section("s", block(name), kind, c_in, c_out, 32)).params == params


@pytest.mark.parametrize("arch,params", [(NB201_ALL_CONV, 1_531_546), (NB201_EXAMPLE, 1_288_506)])
def test_nb201_skeleton_parameter_counts(arch, params):
    from graphs.nb201 import arch_to_block

    cell = arch_to_block(arch)
    assert network_cost(cell, "nb201", "cifar10").params == params
    assert count_params(build_model(cell, "nb201", "cifar10").module) == params


def _base_blocks():
    return [p.stem for p in sorted(CORPUS.glob("*.txt")) if p.stem not in ("stem_conv", "resnet_reduction")]


@pytest.mark.parametrize("name", _base_blocks())
@pytest.mark.parametrize("macro,dataset,x", [("nader", "cifar10", 12), ("nader", "imagenet16-120", 16),
                                             ("nb201", "cifar100", None)])
def test_analytic_cost_equals_built_module(name, macro, dataset, x):
    compiled = build_model(block(name), macro, dataset, x)
    size = compiled.layout.dataset.image_size
    assert count_params(compiled.module) == compiled.cost.params
    assert count_macs(compiled.module, torch.randn(1, 3, size, size)) == compiled.cost.flops


def test_architecture_sections_cost_equals_built_module():
    from graphs.ir import parse_architecture

    text = "\n".join((CORPUS / f"{n}.txt").read_text() for n in ("se_block", "stem_conv", "resnet_reduction"))
    compiled = build_model(parse_architecture(text), "nader", "cifar10", 8)
    assert count_params(compiled.module) == compiled.cost.params
    assert count_macs(compiled.module, torch.randn(1, 3, 32, 32)) == compiled.cost.flops


@pytest.mark.parametrize("dataset,max_flops", [("cifar10", 200_000_000), ("cifar100", 200_000_000),
                                               ("imagenet16-120", 50_000_000)])
def test_fit_is_the_largest_width_within_budget(dataset, max_flops):
    b = block("resnet_basic")
    fit = fit_width(b, dataset)
    x = fit.widths[0]
    assert fit.widths == (x, 2 * x, 4 * x)
    assert fit.params <= 1_500_000 and fit.flops <= max_flops
    over = network_cost(b, "nader", dataset, x + 1)
    assert over.params > 1_500_000 or over.flops > max_flops
    assert network_cost(b, "nader", dataset, x) == type(over)(fit.params, fit.flops)


def test_fit_head_has_the_dataset_class_count():
    compiled = build_model(block("se_block"), "nader", "cifar100")
    assert compiled.module(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    compiled = build_model(block("se_block"), "nader", "imagenet16-120")
    assert compiled.module(torch.randn(2, 3, 16, 16)).shape == (2, 120)


def test_budget_is_configurable():
    b = block("resnet_basic")
    small = fit_width(b, "cifar10", Budget(max_params=200_000))
    assert small.params <= 200_000 and small.widths[0] < fit_width(b, "cifar10").widths[0]


def test_block_too_big_at_smallest_width_is_rejected():
    huge = parse_block("""0:input
1:output
2:Conv2d(out_channels=64*C,kernel_size=7)
3:Conv2d(out_channels=C,kernel_size=7)
0->2
2->3
3->1
""")
    with pytest.raises(BudgetError, match=r"smallest width x=4.*params"):
        fit_width(huge, "cifar10")


def test_fit_skips_widths_where_the_block_does_not_build():
    grouped = parse_block("""0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3,groups=8)
3:Add
0->2
2,0->3
3->1
""")
    fit = fit_width(grouped, "cifar10")
    assert fit.widths[0] % 8 == 0
