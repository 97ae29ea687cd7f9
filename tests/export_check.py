"""The round trip every exported model must pass: the written file, run in a fresh namespace,
rebuilds a network that takes the compiled one's weights and computes the same outputs."""
from __future__ import annotations

import runpy
from pathlib import Path

import torch


def rebuild_exported(path: Path, src: str | None = None):
    """The file at `path` (written from `src` when given) run in a fresh namespace (only what the
    file defines and imports); the network its build_model() returns."""
    if src is not None:
        path.write_text(src)
    return runpy.run_path(str(path))["build_model"]()


def assert_same_outputs(rebuilt, compiled_module, input_shape: tuple[int, ...]) -> None:
    rebuilt.load_state_dict(compiled_module.state_dict())
    compiled_module.eval()
    rebuilt.eval()
    x = torch.randn(*input_shape)
    assert torch.equal(rebuilt(x), compiled_module(x))
