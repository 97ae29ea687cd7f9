"""Keeping keys off disk: a redactor for every text the run writes, masking for config dumps."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

MASK = "***"
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)$", re.I)
# Shapes of provider keys, for keys that reach a text without our knowing them (e.g. echoed by a server).
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|sk-ant-[A-Za-z0-9_\-]{16,})\b")


class Redactor:
    """Replaces the run's known secret values (and anything shaped like a provider key) by ***."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return _KEY_SHAPES.sub(MASK, text)


def literal_secrets(cfg: DictConfig | dict) -> list[tuple[str, str]]:
    """(dotted key, value) of secret-named keys that hold a literal value rather than an
    interpolation such as ${oc.env:...}."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f"{path}.{k}" if path else str(k)
                if SECRET_KEY.search(str(k)) and isinstance(v, str) and v and v != MASK and not v.startswith("${"):
                    found.append((sub, v))
                else:
                    walk(v, sub)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg, "")
    return found


def masked_yaml(cfg: DictConfig) -> str:
    """The config as YAML with every secret-named literal value masked (interpolations stay as text)."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key, _ in literal_secrets(copy):
        OmegaConf.update(copy, key, MASK, merge=False)
    return OmegaConf.to_yaml(copy)


def scrub_files(paths: Iterable[Path], redact: Redactor) -> None:
    """Rewrite files that others wrote (Hydra's .hydra/*.yaml) with secrets masked."""
    for path in paths:
        if path.is_file():
            text = path.read_text()
            clean = redact(text)
            if clean != text:
                path.write_text(clean)
