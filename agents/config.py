"""The run configuration's schema: every key and group of conf/ with its type, range, choices and
path checks, validated right after Hydra composes the config and before any work starts.

Defaults live in the YAML (conf/), not here: every field of a run-config model is required, so a
key that the YAML forgets is an error rather than a silent second default. Models that are also
library APIs (TrainerProfile, ReaderSettings, Caps, Price) keep their own defaults; tests keep
those equal to the YAML's.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from training.profiles import TrainerProfile

from .llm.ledger import Price
from .reader import ReaderSettings

ROOT_BLOCK_MAX_BYTES = 1_000_000  # a block file is a few hundred bytes; a large one is the wrong file


class ConfigError(ValueError):
    """A bad configuration value: `key`, the value and what is valid, in one line."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


PositiveInt = Field(gt=0)


class DatasetConfig(_Strict):
    name: Literal["digits", "cifar10", "cifar100", "imagenet16-120"]
    root: str | None

    @field_validator("root")
    @classmethod
    def _root_is_folder(cls, v: str | None) -> str | None:
        if v is None or not str(v).strip():
            return None
        path = Path(v).expanduser()
        if path.exists() and not path.is_dir():
            raise ValueError(f"{v} is not a folder (give the folder that holds the dataset)")
        return v


class RetryConfig(_Strict):
    attempts: StrictInt = Field(ge=1, le=100)
    max_wait_s: float = Field(gt=0)
    initial_s: float = Field(ge=0)
    max_backoff_s: float = Field(ge=0)
    jitter_s: float = Field(ge=0)


class LLMConfig(BaseModel):
    """Shared settings are checked here; each provider's own fields (model, base_url, client, ...)
    are checked by agents.llm.providers, which knows the provider."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    provider: str
    model: Any = None
    timeout_s: float = Field(gt=0)
    retry: RetryConfig
    cache: str | None
    cache_mode: Literal["readwrite", "replay"]
    prices: dict[str, Price]

    @field_validator("cache")
    @classmethod
    def _cache_folder(cls, v: str | None) -> str | None:
        return _writable_folder(v) if v is not None else None


class BudgetConfig(_Strict):
    max_params: StrictInt | None = Field(gt=0)
    max_flops: StrictInt | None = Field(gt=0)
    max_usd: float | None = Field(gt=0)
    max_tokens: StrictInt | None = Field(gt=0)
    max_hours: float | None = Field(gt=0)


class RoleConfig(_Strict):
    llm: str | dict[str, Any] | None


class AgentsConfig(_Strict):
    reader: RoleConfig
    proposer: RoleConfig
    modifier: RoleConfig
    reflector: RoleConfig


class SearchOptions(_Strict):
    max_children: StrictInt | None = Field(None, ge=1)
    c: float | None = Field(None, ge=0)


class SearchConfig(_Strict):
    policy: str
    options: SearchOptions | None

    @field_validator("policy")
    @classmethod
    def _known(cls, v: str) -> str:
        from graphs.search import POLICIES

        return _one_of(v, sorted(POLICIES), "policy")


class MemoryConfigSchema(_Strict):
    url: str | None
    path: str | None
    embedder: str

    @field_validator("embedder")
    @classmethod
    def _known(cls, v: str) -> str:
        from tools.memory.embedders import EMBEDDER_NAMES

        if str(v).strip().lower() not in EMBEDDER_NAMES:
            raise ValueError(f"unknown embedder {v!r}; valid: {', '.join(EMBEDDER_NAMES)}")
        return v

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        from urllib.parse import urlsplit

        if v is None or not str(v).strip():
            return None
        parts = urlsplit(str(v))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r} is not an http:// or https:// URL with a host (e.g. http://127.0.0.1:6333)")
        return v

    @field_validator("path")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        return _writable_folder(v) if v is not None and str(v).strip() else None

    @model_validator(mode="after")
    def _one(self) -> "MemoryConfigSchema":
        if self.url and self.path:
            raise ValueError("url and path are both set: url for a Qdrant server, path for a local store, not both")
        return self


class MacroConfig(_Strict):
    name: str

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from graphs.macro import MACROS

        return _one_of(v, MACROS, "macro")


class LauncherConfig(_Strict):
    name: str
    workers: StrictInt = Field(ge=1, le=256)
    time_limit_s: Literal["auto"] | Annotated[float, Field(gt=0)] | None  # auto: from the root's training time
    threads: StrictInt | None = Field(ge=1, le=1024)  # per training; null: the cores / trainings in flight
    resources: dict[str, float] | None  # ray: each training's Ray resources
    address: str | None  # ray: null = a local cluster; auto or ray://HOST:PORT joins one

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for k, n in (v or {}).items():
            if not math.isfinite(n) or n < 0:
                raise ValueError(f"{k}={n}: a Ray resource amount is a number >= 0, e.g. {{num_cpus: 4, num_gpus: 1}}")
        return v

    @model_validator(mode="after")
    def _ray_installed(self) -> "LauncherConfig":
        if self.name == "ray":
            from training.ray_launcher import RayMissingError, import_ray

            try:
                import_ray()
            except RayMissingError as exc:
                raise ValueError(str(exc)) from None
        return self

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None or not str(v).strip():
            return None
        if v != "auto" and not str(v).startswith(("ray://", "localhost:", "127.")) and ":" not in str(v):
            raise ValueError(f"{v!r}: give auto, ray://HOST:PORT or HOST:PORT of a Ray cluster, or null for a local one")
        return v

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from training.launchers import LAUNCHERS

        return _one_of(v, sorted(LAUNCHERS), "launcher")


class TrackingConfig(_Strict):
    name: Literal["none", "mlflow"]
    uri: str | None
    experiment: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _installed(self) -> "TrackingConfig":
        if self.name == "mlflow":
            import importlib.util

            if importlib.util.find_spec("mlflow") is None:
                raise ValueError('tracking=mlflow needs MLflow: pip install ".[tracking]"')
        return self


class EvaluatorConfig(_Strict):
    name: str
    table: str | None
    out_of_space: Literal["train", "skip"]

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from training.evaluators import EVALUATORS

        return _one_of(v, EVALUATORS, "evaluator")

    @model_validator(mode="after")
    def _table(self) -> "EvaluatorConfig":
        if self.name == "nb201_table":
            if not self.table:
                raise ValueError("evaluator.name=nb201_table needs evaluator.table=CSV (built from the NB201 release)")
            if not Path(self.table).expanduser().is_file():
                raise ValueError(f"evaluator.table={self.table}: no such file")
        return self


class SpaceConfig(_Strict):
    name: Literal["open", "nb201"]
    root: str | None
    blind: StrictBool = False

    @field_validator("blind")
    @classmethod
    def _blind(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("name") != "nb201":
            raise ValueError("is for space=nb201 (ops shown under neutral names); the open space has no op names "
                             "to hide")
        return v

    @field_validator("root")
    @classmethod
    def _root(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("name") == "nb201":
            from graphs.nb201 import parse_arch

            if not v:
                raise ValueError("space=nb201 needs space.root=ARCH, an NB201 arch string such as "
                                 "'|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|'")
            parse_arch(v)  # Nb201ArchError is a ValueError naming what is wrong
        elif v is not None:
            raise ValueError("is for space=nb201; the open space starts from root_block or the macro's default root")
        return v


_DESIGNER_OPTIONS = {"team": ("knowledge", "experience", "feedback"), "random": ("max_edits",),
                     "rea": ("max_edits", "population", "tournament")}


class DesignerConfig(_Strict):
    name: Literal["team", "random", "rea"]
    # The team's parts (the paper's ablations switch one off): knowledge retrieval (no-reader),
    # experience retrieval (no-lde), validator feedback rounds (no-lif).
    knowledge: StrictBool | None = Field(None, validate_default=True)
    experience: StrictBool | None = Field(None, validate_default=True)
    feedback: StrictBool | None = Field(None, validate_default=True)
    max_edits: StrictInt | None = Field(None, ge=1, le=10, validate_default=True)
    population: StrictInt | None = Field(None, ge=2, le=100_000, validate_default=True)
    tournament: StrictInt | None = Field(None, ge=1, le=100_000, validate_default=True)

    @field_validator("max_edits", "population", "tournament", "knowledge", "experience", "feedback")
    @classmethod
    def _option(cls, v: int | None, info: ValidationInfo) -> int | None:
        name = info.data.get("name")
        if name is None:
            return v  # the name itself is wrong: that error is the one reported
        needs = _DESIGNER_OPTIONS[name]
        if v is not None and info.field_name not in needs:
            raise ValueError(f"designer={name} takes no {info.field_name}"
                             + (f" (its options: {', '.join(needs)})" if needs else ""))
        if v is None and info.field_name in needs:
            raise ValueError(f"designer={name} needs it (see conf/designer/{name}.yaml)")
        if info.field_name == "tournament" and v is not None and v > (info.data.get("population") or v):
            raise ValueError(f"is larger than designer.population={info.data['population']}")
        return v


def _proxy_name(v: str) -> str:
    from training.proxies import PROXIES

    return _one_of(v, list(PROXIES), "proxy")


class ProxiesConfig(_Strict):
    names: list[str]
    batch: StrictInt = Field(ge=1, le=4096)

    @field_validator("names")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            _proxy_name(name)
        if len(set(v)) != len(v):
            raise ValueError("names a proxy twice")
        return v


class ScreenConfig(_Strict):
    k: StrictInt = Field(ge=1, le=32)
    proxy: str

    @field_validator("proxy")
    @classmethod
    def _known(cls, v: str) -> str:
        return _proxy_name(v)


class RunConfig(_Strict):
    """The whole composed config (Hydra's own `hydra` node excluded)."""

    dataset: DatasetConfig
    llm: LLMConfig
    trainer: TrainerProfile
    search: SearchConfig
    memory: MemoryConfigSchema
    macro: MacroConfig
    space: SpaceConfig
    designer: DesignerConfig
    proxies: ProxiesConfig
    screen: ScreenConfig
    trials: StrictInt = Field(ge=0, le=100_000)
    parallel: StrictInt = Field(ge=1, le=64)
    seed: StrictInt = Field(ge=0, le=2**32 - 1)
    max_rounds: StrictInt = Field(ge=1, le=50)
    budget: BudgetConfig
    agents: AgentsConfig
    root_block: str | None
    read: str | list[str] | None
    reader: ReaderSettings
    launcher: LauncherConfig
    evaluator: EvaluatorConfig
    tracking: TrackingConfig
    progress: StrictBool | None
    export: StrictBool

    @field_validator("root_block")
    @classmethod
    def _root_file(cls, v: str | None) -> str | None:
        if v is None:
            return None
        path = Path(str(v)).expanduser()
        if not str(v).strip():
            raise ValueError("is empty: give a base block file, or leave it unset for the macro's default root")
        if not path.is_file():
            raise ValueError(f"{v}: no such file")
        if path.stat().st_size > ROOT_BLOCK_MAX_BYTES:
            raise ValueError(f"{v} is {path.stat().st_size:,} bytes: a block file is text of at most "
                             f"{ROOT_BLOCK_MAX_BYTES:,} bytes")
        return v

    @field_validator("read")
    @classmethod
    def _sources(cls, v: str | list[str] | None) -> str | list[str] | None:
        for s in [v] if isinstance(v, str) else v or []:
            if not str(s).strip():
                raise ValueError("is empty: give a PDF, a .txt/.md file, a folder of them, or arxiv:QUERY")
            if not str(s).startswith("arxiv:") and not Path(s).expanduser().exists():
                raise ValueError(f"{s}: no such file or folder (give a PDF, a .txt/.md file, a folder of them, "
                                 f"or arxiv:QUERY)")
        return v


def _one_of(v: str, valid, what: str) -> str:
    """`v` if it is one of `valid`; otherwise the error that lists them."""
    if v not in valid:
        raise ValueError(f"unknown {what} {v!r}; valid: {', '.join(valid)}")
    return v


def _writable_folder(v: str) -> str:
    """A folder that exists and is writable, or that can be created (its nearest existing parent is
    a writable folder). Checked without creating anything."""
    path = Path(str(v)).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{v} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{v} is not writable")
        return v
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK) or str(parent).startswith(("/proc", "/sys")):
        raise ValueError(f"{v} cannot be created ({parent} is not a writable folder)")
    return v


def validate_config(data: Mapping[str, Any]) -> RunConfig:
    """The run config, checked. ConfigError (one line: key, bad value, what is valid) otherwise."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, data) from None


def _one_line(exc: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    # The first error is the one to fix; pydantic lists one per member of a union, so prefer the
    # member that got furthest (the longest location) for a clearer message.
    errors = exc.errors(include_url=False)
    first = errors[0]
    same = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    e = max(same, key=lambda x: len(x["loc"]))
    loc = [str(p) for p in e["loc"] if not _is_union_tag(p)]
    key = ".".join(loc)
    value = _lookup(data, [p for p in e["loc"] if not _is_union_tag(p)])
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    elif e["type"] == "missing":
        msg = "is missing from the config (every key has its default in conf/)"
    elif e["type"] == "extra_forbidden":
        msg = "is not a config key"
    shown = f"={_show(value)}" if value is not _MISSING and e["type"] not in ("missing", "extra_forbidden") else ""
    return ConfigError(f"{key}{shown}", msg[0].lower() + msg[1:] if msg else "invalid")


_MISSING = object()
_UNION_TAGS = ("str", "int", "float", "bool", "none", "list", "dict", "function-after", "function-before")


def _is_union_tag(p: object) -> bool:
    s = str(p)
    return (isinstance(p, str) and (s in _UNION_TAGS or s.startswith(("list[", "dict[", "function-", "nullable[",
                                                                         "constrained-")))
            and not s.isidentifier() or s in ("str", "int", "float", "bool", "none"))


def _lookup(data: Any, loc: list) -> Any:
    for p in loc:
        if isinstance(data, Mapping) and p in data:
            data = data[p]
        elif isinstance(data, (list, tuple)) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return _MISSING
    return data


def _show(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Keys whose change alters what a run's results mean: a resume must keep them. The rest (trials,
# caps, llm.cache, progress, ...) may change on resume and are logged.
RESULT_KEYS = ("dataset", "macro", "space", "designer", "screen", "trainer", "evaluator", "search", "budget.max_params", "budget.max_flops",
               "seed", "max_rounds", "root_block", "llm.provider", "llm.model", "llm.client", "agents")


# Result keys added after runs were made, with the values that mean "as before": a run saved
# without the key resumes when the new config has them.
ADDED_LATER: dict[str, dict[str, Any]] = {"screen": {"k": 1}}
# Keys added inside a result key's mapping, with the value that means "as before": a saved config
# without one equals a new config that has that value.
ADDED_INSIDE: dict[str, dict[str, Any]] = {"space": {"blind": False},
                                           "designer": {"knowledge": True, "experience": True, "feedback": True}}


def result_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The dotted keys under RESULT_KEYS whose values differ between two resolved configs."""
    out: list[str] = []
    for key in RESULT_KEYS:
        a, b = _lookup(saved, key.split(".")), _lookup(now, key.split("."))
        if a == b:
            continue
        if a is _MISSING and key in ADDED_LATER and isinstance(b, Mapping) and \
                all(b.get(k) == v for k, v in ADDED_LATER[key].items()):
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            before = ADDED_INSIDE.get(key, {})
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b))
                    if a.get(k, before.get(k, _MISSING)) != b.get(k, before.get(k, _MISSING))]
        else:
            out.append(key)
    return out


def limit_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Top-level-or-nested keys outside RESULT_KEYS that changed (logged on resume, not refused)."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if any(prefix == k or prefix.startswith(k + ".") for k in RESULT_KEYS):
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k, _MISSING), b.get(k, _MISSING), f"{prefix}.{k}" if prefix else str(k))
        elif a != b:
            out.append(prefix)

    walk(saved, now, "")
    return out
