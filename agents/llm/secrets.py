"""Keeping keys off disk: a redactor for every text the run writes, masking for config dumps."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

MASK = "***"
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)$", re.I)
# What an environment variable's name may look like; anything else in llm.api_key_env is most
# likely a key pasted into the wrong field, and is treated as a secret.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_VARIABLE = "api_key_env"
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


def _walk_literals(cfg: DictConfig | dict, hit) -> list[tuple[str, str]]:
    """(dotted key, value) of the unresolved config's string values for which hit(key, value) holds;
    a hit is not searched further."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(v, str) and hit(str(k), v):
                    found.append((sub, v))
                else:
                    walk(v, sub)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg, "")
    return found


def literal_secrets(cfg: DictConfig | dict) -> list[tuple[str, str]]:
    """(dotted key, value) of secret-named keys that hold a literal value rather than an
    interpolation such as ${oc.env:...}."""
    return _walk_literals(cfg, lambda k, v: bool(SECRET_KEY.search(k)) and bool(v) and v != MASK
                          and not v.startswith("${"))


def bad_key_variables(cfg: DictConfig | dict) -> list[tuple[str, str]]:
    """(dotted key, value) of `api_key_env` values that cannot be a variable's name (a pasted key?)."""
    return _walk_literals(cfg, lambda k, v: k == KEY_VARIABLE and bool(v) and v != MASK and not v.startswith("${")
                          and not ENV_NAME.fullmatch(v))


def config_secrets(cfg: DictConfig | dict) -> list[str]:
    """Every value the config itself holds that must not be written: literal secrets and keys
    pasted into api_key_env. Known before any key is read, so Hydra's files can be scrubbed at once."""
    return [v for _, v in literal_secrets(cfg) + bad_key_variables(cfg)]


def secret_values(node: Any) -> list[str]:
    """The resolved string values of every secret-named key at any depth, e.g. a header filled
    from ${oc.env:GW_KEY}. A value that cannot be resolved cannot be sent either, and is skipped."""
    found: list[str] = []

    def items(n: Any):
        if isinstance(n, (DictConfig, dict)):
            return [(str(k), k) for k in n.keys()]
        if isinstance(n, (ListConfig, list)):
            return [("", i) for i in range(len(n))]
        return []

    def walk(n: Any) -> None:
        for name, k in items(n):
            try:
                v = n[k]
            except Exception:  # noqa: BLE001 - missing values, unset variables: nothing to redact
                continue
            if SECRET_KEY.search(name) and isinstance(v, str):
                found.append(v)
            else:
                walk(v)

    walk(node)
    return found


def drop_secrets(node: Any) -> Any:
    """A plain copy of `node` without secret-named keys, at any depth (for cache keys and records)."""
    if isinstance(node, dict):
        return {k: drop_secrets(v) for k, v in node.items() if not SECRET_KEY.search(str(k))}
    if isinstance(node, list):
        return [drop_secrets(v) for v in node]
    return node


def masked_yaml(cfg: DictConfig) -> str:
    """The config as YAML with every secret-named literal value, and any key pasted into
    api_key_env, masked (interpolations stay as text)."""
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key, _ in literal_secrets(copy) + bad_key_variables(copy):
        OmegaConf.update(copy, key, MASK, merge=False)
    return OmegaConf.to_yaml(copy)


def scrub_files(paths: Iterable[Path], redact: Redactor) -> None:
    """Rewrite files that others wrote (Hydra's .hydra/*.yaml, a sweep's multirun.yaml) with secrets masked."""
    for path in paths:
        if path.is_file():
            text = path.read_text()
            clean = redact(text)
            if clean != text:
                path.write_text(clean)
