"""The op registry as the one table of ops: what agents read of it (`op_catalog`), which module classes
a compiled block may instantiate, and the checks that keep a table usable."""
from __future__ import annotations

import pytest
from torch import nn

from graphs.compile import instantiate, module_class
from graphs.registry import (DEFAULT_REGISTRY, ModuleSpec, OpSpec, Param, Registry, RegistryError, lookup,
                             op_catalog)


def test_catalog_lists_every_op_but_the_block_ends_in_table_order():
    docs = op_catalog()
    assert [d.name for d in docs] == [n for n in DEFAULT_REGISTRY.names if n not in ("input", "output")]
    assert [d.name for d in op_catalog(include_io=True)] == list(DEFAULT_REGISTRY.names)
    by = {d.name: d for d in docs}
    assert by["Conv2d"].signature == "Conv2d(out_channels, kernel_size, stride=1, dilation=1, groups=1, bias=True)"
    assert by["ReLU"].signature == "ReLU"
    assert by["concat"].signature == "concat(dim=1)" and by["concat"].inputs == "2 or more inputs, in edge order"
    assert by["multiply"].inputs == "exactly 2 inputs, in edge order"
    assert by["permute"].signature == "permute(*dims)"
    assert by["softmax"].signature == "softmax(dim=-1)" and by["DropPath"].signature == "DropPath(p=0.0)"
    conv = {p.name: p for p in by["Conv2d"].params}
    assert conv["out_channels"].required and conv["out_channels"].kind == "channels"
    assert conv["bias"].default == "True" and not conv["bias"].required and conv["bias"].help == "True or False"
    for d in docs:  # one line each, that says something
        assert d.doc and "\n" not in d.doc and len(d.doc) > 15, d


def test_every_builtin_module_class_resolves_to_an_nn_module():
    for spec in DEFAULT_REGISTRY.specs:
        if spec.name in ("input", "output"):
            assert spec.module is None
            continue
        assert issubclass(module_class(spec.module), nn.Module), spec.name


def test_only_classes_the_registry_names_can_be_instantiated():
    assert isinstance(instantiate(ModuleSpec("nn.ReLU")), nn.ReLU)
    for cls in ("nn.Identity", "os.system", "nn.Module", "torch_ops", "Compiled", nn.Identity):
        with pytest.raises(RegistryError, match="not named by any op"):
            instantiate(ModuleSpec(cls))
    # A registry that names a class makes it buildable, through that registry only.
    reg = DEFAULT_REGISTRY.extended(OpSpec("Id", module=nn.Identity, doc="the input unchanged, as a test op"))
    assert isinstance(instantiate(ModuleSpec(nn.Identity), reg), nn.Identity)
    with pytest.raises(RegistryError, match="not an nn.Module class"):
        module_class("system")


def test_extension_adds_or_replaces_without_touching_the_original():
    before = DEFAULT_REGISTRY.names
    relu = OpSpec("relu", module="nn.ReLU", doc="a replacement ReLU entry, spelt in lower case")
    reg = DEFAULT_REGISTRY.extended(relu, OpSpec("Id", module=nn.Identity, doc="the input unchanged, a test op"))
    assert reg.names == tuple("relu" if n == "ReLU" else n for n in before) + ("Id",)
    assert reg.lookup("RELU") is relu and lookup("ReLU") is not relu
    assert DEFAULT_REGISTRY.names == before and DEFAULT_REGISTRY.lookup("id") is None


@pytest.mark.parametrize("specs, message", [
    ((OpSpec("Foo", module="nn.ReLU", doc="a"), OpSpec("foo", module="nn.ReLU", doc="b")), "registered twice"),
    ((OpSpec("Foo", doc="builds nothing"),), "names no module class"),
    ((OpSpec("Foo", module="nn.ReLU"),), "needs a one-line doc"),
    ((OpSpec("Foo", module="nn.ReLU", doc="two\nlines"),), "needs a one-line doc"),
    ((OpSpec("Foo", (Param("k", "int"), Param("k", "int")), module="nn.ReLU", doc="d"),), "repeats a parameter"),
    ((OpSpec("Foo", (Param("k", "integer"),), module="nn.ReLU", doc="d"),), "valid kinds"),
    ((OpSpec("Foo", (Param("k", "int"),), varargs="sizes", module="nn.ReLU", doc="d"),), "varargs='sizes'"),
    ((OpSpec("Foo-Bar", module="nn.ReLU", doc="d"),), "must be an identifier"),
    ((OpSpec("Foo", module=3, doc="d"),), "module must be"),
])
def test_unusable_tables_are_refused(specs, message):
    with pytest.raises(RegistryError, match=message):
        DEFAULT_REGISTRY.extended(*specs) if len(specs) == 1 else Registry(DEFAULT_REGISTRY.specs + specs)


def test_a_registry_needs_the_block_ends():
    with pytest.raises(RegistryError, match="needs the 'input' op"):
        Registry([s for s in DEFAULT_REGISTRY.specs if s.name != "input"])
