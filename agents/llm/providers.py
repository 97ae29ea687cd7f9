"""Model clients from the `llm` config (and per-role `agents.<role>.llm` overrides): the key comes
from the environment variable the config names, is checked against the server before any trial,
and never enters the config. Each role gets a ManagedClient around a shared provider client."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from autogen_core.models import ChatCompletionClient
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from .cache import ReplayCache
from .ledger import Caps, UsageLedger
from .managed import ManagedClient
from .retry import RetryPolicy
from .secrets import Redactor, literal_secrets

ROLES = ("Reader", "Proposer", "Modifier", "Reflector")
# Settings of the run's llm that a role override naming another provider keeps.
SHARED = ("retry", "cache", "cache_mode", "timeout_s", "prices")


class LLMSetupError(ValueError):
    """The llm config or its environment is unusable; the message is one line naming the fix."""


@dataclass
class ClientSet:
    clients: dict[str, ManagedClient]
    ledger: UsageLedger
    redact: Redactor
    warnings: list[str] = field(default_factory=list)

    async def close(self) -> None:
        for inner in {id(c.inner): c.inner for c in self.clients.values()}.values():
            await inner.close()


def role_llm(cfg: DictConfig, role: str, conf_dir: Path) -> DictConfig:
    """The llm config one role runs with: the run's `llm`, or `agents.<role>.llm` = a provider name
    (conf/llm/<name>.yaml, keeping the run's shared settings) or a mapping of fields to change."""
    override = OmegaConf.select(cfg, f"agents.{role.lower()}.llm", default=None)
    if override is None:
        return cfg.llm
    if isinstance(override, str):
        path = conf_dir / "llm" / f"{override}.yaml"
        if not path.is_file():
            valid = sorted(p.stem for p in (conf_dir / "llm").glob("*.yaml"))
            raise LLMSetupError(f"agents.{role.lower()}.llm={override}: no such provider; valid: {', '.join(valid)}")
        shared = {k: cfg.llm[k] for k in SHARED if k in cfg.llm}
        merged = OmegaConf.merge(shared, OmegaConf.load(path))
    else:
        merged = OmegaConf.merge(cfg.llm, override)
    # Interpolations such as ${llm.model} must see this role's llm, so it is placed in a copy of the root.
    root = cfg.copy()
    OmegaConf.set_struct(root, False)
    OmegaConf.update(root, "llm", merged, merge=False)
    return root.llm


REPLAY_ONLY_KEY = "replay-only"  # stands in for a key when every answer comes from the replay cache


def read_key(llm: DictConfig, who: str) -> str | None:
    var = llm.get("api_key_env")
    if not var:
        return None
    key = os.environ.get(var)
    if key:
        return key
    if llm.get("api_key_optional"):
        return llm.get("api_key_when_unset")
    if llm.get("cache") and llm.get("cache_mode") == "replay":
        return REPLAY_ONLY_KEY
    raise LLMSetupError(f"environment variable {var} is not set: llm={llm.provider}{who} needs an API key "
                        f"(keys are read from the environment only)")


def check_key(llm: DictConfig, key: str | None, who: str, timeout_s: float = 10.0,
              redact=lambda s: s) -> str | None:
    """Ask the server's model list whether it accepts the key, before any trial. A rejected key is
    an error; an unreachable server is only a warning (the trials will retry, or replay the cache)."""
    spec = llm.get("check_key")
    if not spec or not spec.get("url"):
        return None
    headers = {str(k): str(v) for k, v in (spec.get("extra_headers") or {}).items()}
    if spec.get("auth_header") and key:
        headers[str(spec.auth_header)] = str(spec.get("auth_value", "{key}")).replace("{key}", key)
    req = urllib.request.Request(str(spec.url), headers=headers, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s):
            return None
    except urllib.error.HTTPError as exc:
        var = llm.get("api_key_env") or "(no key variable)"
        if exc.code == 401:
            raise LLMSetupError(redact(f"the {llm.provider} server{who} rejected the key in {var} (HTTP 401: "
                                       f"{_error_text(exc)})")) from None
        if exc.code == 403:  # a restricted key may chat without listing models: the first call will tell
            return redact(f"the key in {var} may not list models (HTTP 403: {_error_text(exc)}); going on")
        return None  # e.g. 404: the server has no model list; the first call will tell
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"cannot reach {spec.url} to check the key ({reason}); trials will retry or use the cache"


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read().decode(errors="replace"))
        err = body.get("error", body)
        return str(err.get("message") if isinstance(err, dict) else err)[:200]
    except (ValueError, AttributeError):
        return exc.reason or "no message"


# Client arguments that say where and how to connect, not what the answer is: kept out of cache keys.
_TRANSPORT = {"api_key", "base_url", "azure_endpoint", "host", "timeout", "max_retries", "default_headers",
              "headers", "azure_ad_token", "azure_ad_token_provider", "organization", "follow_redirects"}


def answer_settings(llm: dict) -> dict:
    """What, besides the messages, decides a model's answer: provider and client settings (sampling
    options, deployment, the offline designer's seed), without keys or endpoints. `llm` is resolved."""
    return {"provider": str(llm.get("provider")),
            "client": {k: v for k, v in llm["client"].items() if k not in _TRANSPORT and not k.startswith("_")}}


def build_clients(cfg: DictConfig, conf_dir: Path, *, check: bool = True) -> ClientSet:
    """Per-role clients; every configuration problem comes out as one LLMSetupError line."""
    from omegaconf.errors import OmegaConfBaseException
    from pydantic import ValidationError

    try:
        return _build_clients(cfg, conf_dir, check)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise LLMSetupError(f"{exc.title} {where}: {e['msg']} (got {e.get('input')!r})") from None
    except OmegaConfBaseException as exc:
        raise LLMSetupError(f"llm config: {str(exc).splitlines()[0]}") from None


def _build_clients(cfg: DictConfig, conf_dir: Path, check: bool) -> ClientSet:
    from hydra.utils import instantiate
    from pydantic import ValidationError

    bad = [k for k, _ in literal_secrets(cfg)]
    if bad:
        raise LLMSetupError(f"{', '.join(bad)} holds a literal secret; keys come from the environment only: "
                            f"name the variable in llm.api_key_env")
    redact = Redactor()
    try:
        configs = {role: role_llm(cfg, role, conf_dir) for role in ROLES}
        resolved = {role: OmegaConf.to_container(llm, resolve=True, throw_on_missing=True)
                    for role, llm in configs.items()}
    except MissingMandatoryValue as exc:
        raise LLMSetupError(f"llm.{exc.full_key.split('.', 1)[-1]} must be set for this provider "
                            f"(e.g. llm.model=NAME)") from None
    prices: dict = {}
    for llm in resolved.values():
        prices.update(llm.get("prices") or {})
    try:
        caps = Caps(max_usd=cfg.budget.get("max_usd"), max_tokens=cfg.budget.get("max_tokens"),
                    max_hours=cfg.budget.get("max_hours"))
    except ValidationError as exc:
        e = exc.errors()[0]
        raise LLMSetupError(f"budget.{e['loc'][0]}: {e['msg']} (got {e.get('input')!r})") from None
    ledger = UsageLedger(prices, caps, redact=redact)
    if caps.max_usd is not None:
        unpriced = sorted({str(llm["model"]) for llm in resolved.values()} - set(prices))
        if unpriced:
            raise LLMSetupError(f"budget.max_usd needs a price for model(s) {', '.join(unpriced)}: add "
                                f"+llm.prices.<model>={{input: USD_per_1M, output: USD_per_1M}}")
    inners: dict[str, ChatCompletionClient] = {}
    caches: dict[tuple, ReplayCache] = {}
    warnings: list[str] = []
    clients: dict[str, ManagedClient] = {}
    for role, llm in configs.items():
        if "client" not in llm:
            raise LLMSetupError(f"llm config for {role} has no client (llm={llm.get('provider')})")
        ident = json.dumps(resolved[role], sort_keys=True, default=str)
        if ident not in inners:
            users = [r for r, c in resolved.items() if c == resolved[role]]
            who = "" if len(users) == len(ROLES) else f" (for the {', '.join(users)})"
            key = read_key(llm, who)
            if key not in (llm.get("api_key_when_unset"), REPLAY_ONLY_KEY):
                redact.add(key)
            if check and key != REPLAY_ONLY_KEY and llm.get("cache_mode") != "replay":
                warning = check_key(llm, key, who, redact=redact)
                if warning:
                    warnings.append(warning)
            try:
                inners[ident] = instantiate(llm.client, **({"api_key": key} if key is not None else {}))
            except Exception as exc:  # noqa: BLE001 - Hydra wraps import and argument errors alike
                cause = exc.__cause__ or exc  # Hydra's own line only names the target
                raise LLMSetupError(f"cannot build the {llm.get('provider')} client{who}: "
                                    f"{redact(str(cause).strip().splitlines()[-1] if str(cause).strip() else repr(cause))}"
                                    ) from None
        cache = None
        if llm.get("cache"):
            cache_id = (str(llm.cache), str(llm.get("cache_mode", "readwrite")))
            if cache_id not in caches:
                try:
                    caches[cache_id] = ReplayCache(llm.cache, llm.get("cache_mode", "readwrite"), redact=redact)
                except ValueError as exc:
                    raise LLMSetupError(str(exc)) from None
            cache = caches[cache_id]
        retry = RetryPolicy.model_validate(resolved[role].get("retry") or {})
        clients[role] = ManagedClient(inners[ident], role=role, model=str(llm.model), ledger=ledger, retry=retry,
                                      cache=cache, timeout_s=llm.get("timeout_s"),
                                      settings=answer_settings(resolved[role]))
    return ClientSet(clients=clients, ledger=ledger, redact=redact, warnings=warnings)
