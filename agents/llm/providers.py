"""Model clients from the `llm` config (and per-role `agents.<role>.llm` overrides): the key comes
from the environment variable the config names, is checked against the server before any trial,
and never enters the config. Each role gets a ManagedClient around a shared provider client."""
from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from autogen_core.models import ChatCompletionClient
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from .cache import ReplayCache
from .ledger import Caps, UsageLedger
from .managed import ManagedClient
from .retry import RetryPolicy
from .secrets import Redactor, bad_key_variables, drop_secrets, literal_secrets, secret_values

ROLES = ("Reader", "Proposer", "Modifier", "Reflector")
# Settings of the run's llm that a role override naming another provider keeps.
SHARED = ("retry", "cache", "cache_mode", "timeout_s", "prices")
# Fields that hold a server's address; a malformed one would only fail, slowly, in every trial.
URL_FIELDS = ("base_url", "endpoint", "host")
# A whitespace or control character inside a key: a copy-paste accident that no server accepts.
_BAD_KEY_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
MODEL_INFO = "{vision:false,function_calling:true,json_output:true,family:unknown,structured_output:false}"
_EXAMPLES = {"model": "NAME", "endpoint": "https://RESOURCE.openai.azure.com", "base_url": "http://HOST:PORT/v1",
             "host": "http://HOST:PORT"}


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


# ------------------------------------------------------------------------------ per-role configs
def role_where(cfg: DictConfig, role: str) -> str:
    """Where a role's llm settings come from, as the config key to name in errors."""
    where = f"agents.{role.lower()}.llm"
    return "llm" if OmegaConf.select(cfg, where, default=None) is None else where


def role_llm(cfg: DictConfig, role: str, conf_dir: Path) -> DictConfig:
    """The llm config one role runs with: the run's `llm`; or `agents.<role>.llm` = a provider name
    (conf/llm/<name>.yaml, keeping the run's shared settings); or a mapping with `provider: NAME`
    (that file, then the mapping's other fields); or a mapping of fields to change in the run's llm."""
    where = f"agents.{role.lower()}.llm"
    override = OmegaConf.select(cfg, where, default=None)
    if override is None:
        return cfg.llm
    try:
        if isinstance(override, str):
            merged = _provider_llm(cfg, override, conf_dir, f"{where}={override}")
        elif isinstance(override, DictConfig) and override.get("provider") is not None:
            name = str(override.provider)
            merged = OmegaConf.merge(_provider_llm(cfg, name, conf_dir, f"{where}.provider={name}"), override)
        elif isinstance(override, DictConfig):
            base = cfg.llm.copy()
            OmegaConf.set_struct(base, False)  # the mapping may add fields (client options)
            merged = OmegaConf.merge(base, override)
        else:
            raise LLMSetupError(f"{where} must be a provider name or a mapping of llm fields, not {override!r}")
    except OmegaConfBaseException as exc:
        raise LLMSetupError(f"{where}: {str(exc).splitlines()[0]}") from None
    # Interpolations such as ${llm.model} must see this role's llm, so it is placed in a copy of the root.
    root = cfg.copy()
    OmegaConf.set_struct(root, False)
    OmegaConf.update(root, "llm", merged, merge=False)
    return root.llm


def _provider_llm(cfg: DictConfig, name: str, conf_dir: Path, where: str) -> DictConfig:
    path = conf_dir / "llm" / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in (conf_dir / "llm").glob("*.yaml"))
        raise LLMSetupError(f"{where}: no such provider; valid: {', '.join(valid)}")
    shared = {k: cfg.llm[k] for k in SHARED if k in cfg.llm}
    merged = OmegaConf.merge(shared, OmegaConf.load(path))
    OmegaConf.set_struct(merged, False)
    return merged


def must_be_set(where: str, name: str, provider: str) -> str:
    """'llm.model must be set ...' with an example of the override that sets it."""
    example = _EXAMPLES.get(name.split(".")[-1], "VALUE")
    if where == "llm":
        return f"llm.{name} must be set for llm={provider} (e.g. llm.{name}={example})"
    value = f"'{example}'" if ":" in example else example  # a URL in a Hydra mapping must be quoted
    return f"{where}.{name} must be set for {provider} (e.g. \"{where}={{provider:{provider},{name}:{value}}}\")"


def check_urls(llm: dict, where: str) -> None:
    """Server addresses must be http(s) URLs with a host: anything else fails in every trial."""
    for name in URL_FIELDS:
        if name not in llm:
            continue
        value = llm[name]
        if value is None or value == "":
            raise LLMSetupError(must_be_set(where, name, str(llm.get("provider"))))
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LLMSetupError(f"{where}.{name}={value} is not an http:// or https:// URL with a host "
                                f"(e.g. {_EXAMPLES[name]})")


def price_hint(model: str) -> str:
    """The override that adds a price for `model`, in a form Hydra's grammar accepts for that name."""
    if re.fullmatch(r"[A-Za-z0-9_\-]+", model):
        return f"'+llm.prices.{model}={{input:USD_per_1M,output:USD_per_1M}}'"
    if not re.search(r"[\s:,{}\[\]='\"]", model):  # dots and slashes are fine as a mapping key
        return f"'+llm.prices={{{model}:{{input:USD_per_1M,output:USD_per_1M}}}}'"
    return f"an entry for {model!r} under llm.prices in conf/config.yaml"


# ------------------------------------------------------------------------------ keys
REPLAY_ONLY_KEY = "replay-only"  # stands in for a key when every answer comes from the replay cache


def read_key(llm: DictConfig, who: str) -> str | None:
    """The key from the variable llm.api_key_env names, without the surrounding whitespace that a
    key pasted from a file brings along. The key itself is never part of a message."""
    var = llm.get("api_key_env")
    if not var:
        return None
    key = (os.environ.get(var) or "").strip()
    if key:
        if _BAD_KEY_CHARS.search(key):
            raise LLMSetupError(f"environment variable {var} holds whitespace or control characters inside the key "
                                f"(value not shown): set it to the key alone")
        return key
    if llm.get("api_key_optional"):
        return llm.get("api_key_when_unset")
    if llm.get("cache") and llm.get("cache_mode") == "replay":
        return REPLAY_ONLY_KEY
    raise LLMSetupError(f"environment variable {var} is not set: llm={llm.provider}{who} needs an API key "
                        f"(keys are read from the environment only)")


def check_key(llm: DictConfig, key: str | None, who: str, timeout_s: float = 10.0,
              redact=lambda s: s, where: str = "llm") -> str | None:
    """Ask the server's model list whether it accepts the key, before any trial. A rejected key, a
    host name that does not resolve and a server that does not answer within `timeout_s` are errors
    naming the URL. Every message passes through `redact`."""
    spec = llm.get("check_key")
    if not spec or not spec.get("url"):
        return None
    url = str(spec.url)
    var = llm.get("api_key_env") or "(no key variable)"
    try:
        _ask(url, spec, key, timeout_s)
        return None
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise LLMSetupError(redact(f"the {llm.provider} server{who} rejected the key in {var} (HTTP 401: "
                                       f"{_error_text(exc)})")) from None
        if exc.code == 403:  # a restricted key may chat without listing models: the first call will tell
            return redact(f"the key in {var} may not list models (HTTP 403: {_error_text(exc)}); going on")
        return None  # e.g. 404: the server has no model list; the first call will tell
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, socket.gaierror) and reason.errno != socket.EAI_AGAIN:
            raise LLMSetupError(redact(_unresolved(llm, url, reason, where))) from None
        # A server that does not answer now would fail every trial after minutes of retries.
        tip = "; to run from llm.cache alone, use llm.cache_mode=replay" if llm.get("cache") else ""
        host = urlsplit(url).hostname
        named = [f"{where}.{n}" for n in URL_FIELDS if n in llm and urlsplit(str(llm[n])).hostname == host]
        raise LLMSetupError(redact(f"cannot reach the {llm.provider} server{who} at {url} within {timeout_s:g}s "
                                   f"({reason}): start it or fix {named[0] if named else where}{tip}")) from None
    except Exception as exc:  # noqa: BLE001 - a check that cannot run must not end the run with a traceback
        text = str(exc).strip().splitlines()
        return redact(f"cannot check the key at {url} ({type(exc).__name__}: {text[0] if text else ''}); going on")


def _ask(url: str, spec: DictConfig, key: str | None, timeout_s: float) -> None:
    headers = {str(k): str(v) for k, v in (spec.get("extra_headers") or {}).items()}
    if spec.get("auth_header") and key:
        headers[str(spec.auth_header)] = str(spec.get("auth_value", "{key}")).replace("{key}", key)
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers, method="GET"), timeout=timeout_s):
        return None


def _unresolved(llm: DictConfig, url: str, reason: socket.gaierror, where: str) -> str:
    host = urlsplit(url).hostname
    named = [f"{where}.{n}" for n in URL_FIELDS if n in llm and urlsplit(str(llm[n])).hostname == host]
    tip = "; to run from llm.cache alone, use llm.cache_mode=replay" if llm.get("cache") else ""
    return (f"cannot resolve the host {host} of {named[0] if named else url} ({reason.strerror}): "
            f"is the address right?{tip}")


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
    options, deployment, the offline designer's seed), without keys or endpoints. Secret-named
    values (a gateway key in default_query, say) are dropped at any depth: they reach every cache
    entry otherwise. `llm` is resolved."""
    return {"provider": str(llm.get("provider")),
            "client": drop_secrets({k: v for k, v in llm["client"].items()
                                    if k not in _TRANSPORT and not k.startswith("_")})}


# ------------------------------------------------------------------------------ building
def build_clients(cfg: DictConfig, conf_dir: Path, *, check: bool = True) -> ClientSet:
    """Per-role clients; every configuration problem comes out as one LLMSetupError line."""
    from pydantic import ValidationError

    try:
        return _build_clients(cfg, conf_dir, check)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise LLMSetupError(f"{exc.title} {where}: {e['msg']} (got {e.get('input')!r})") from None
    except OmegaConfBaseException as exc:
        raise LLMSetupError(f"llm config: {str(exc).splitlines()[0]}") from None


def _refuse_secrets_in_config(cfg: DictConfig) -> None:
    bad = [k for k, _ in literal_secrets(cfg)]
    if bad:
        raise LLMSetupError(f"{', '.join(bad)} holds a literal secret; keys come from the environment only: "
                            f"name the variable in llm.api_key_env")
    pasted = [k for k, _ in bad_key_variables(cfg)]
    if pasted:  # most likely the key itself: never repeat the value
        raise LLMSetupError(f"{', '.join(pasted)} must be the name of an environment variable (letters, digits, _), "
                            f"not a key (value not shown): export the key as a variable and name that")


def _resolve(llm: DictConfig, where: str) -> dict:
    try:
        return OmegaConf.to_container(llm, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as exc:
        raise LLMSetupError(must_be_set(where, exc.full_key.split(".", 1)[-1], str(llm.get("provider")))) from None


def _caps(cfg: DictConfig) -> Caps:
    from pydantic import ValidationError

    try:
        return Caps(max_usd=cfg.budget.get("max_usd"), max_tokens=cfg.budget.get("max_tokens"),
                    max_hours=cfg.budget.get("max_hours"))
    except ValidationError as exc:
        e = exc.errors()[0]
        raise LLMSetupError(f"budget.{e['loc'][0]}: {e['msg']} (got {e.get('input')!r})") from None


def _price_warnings(resolved: dict[str, dict], prices: dict, caps: Caps) -> list[str]:
    """Models without a price would count $0 silently: an error under a dollar cap, else a warning."""
    unpriced_llms = [llm for llm in resolved.values() if not llm.get("free") and str(llm["model"]) not in prices]
    if not unpriced_llms:
        return []
    unpriced = sorted({str(llm["model"]) for llm in unpriced_llms})
    how = " and ".join(price_hint(m) for m in unpriced)
    if caps.max_usd is not None:
        raise LLMSetupError(f"budget.max_usd needs a price for model(s) {', '.join(unpriced)}: add {how}")
    # A server that needs no key (vLLM, LM Studio) is most likely one's own: it may be marked free.
    hosted = any(llm.get("api_key_optional") or not llm.get("api_key_env") for llm in unpriced_llms)
    return [f"no price for model(s) {', '.join(unpriced)}: their calls count as $0; add {how}"
            + (" (or +llm.free=true for a model you host)" if hosted else "")]


def _build_error(exc: Exception, llm: DictConfig, who: str, where: str, redact: Redactor) -> LLMSetupError:
    cause = exc.__cause__ or exc  # Hydra's own line only names the target
    text = str(cause).strip()
    line = text.splitlines()[-1] if text else repr(cause)
    if "model_info" in line:  # a model name the SDK does not know: say how to describe it
        line += f"; give its capabilities with '+{where}.client.model_info={MODEL_INFO}'"
    return LLMSetupError(redact(f"cannot build the {llm.get('provider')} client{who}: {line}"))


def _cache(llm: DictConfig, caches: dict[tuple, ReplayCache], redact: Redactor) -> ReplayCache | None:
    """The role's replay cache; roles that name the same directory and mode share one."""
    if not llm.get("cache"):
        return None
    cache_id = (str(llm.cache), str(llm.get("cache_mode", "readwrite")))
    if cache_id not in caches:
        try:
            caches[cache_id] = ReplayCache(llm.cache, llm.get("cache_mode", "readwrite"), redact=redact)
        except ValueError as exc:
            raise LLMSetupError(str(exc)) from None
    return caches[cache_id]


def _build_clients(cfg: DictConfig, conf_dir: Path, check: bool) -> ClientSet:
    from hydra.utils import instantiate

    _refuse_secrets_in_config(cfg)
    redact = Redactor(secret_values(cfg))
    configs = {role: role_llm(cfg, role, conf_dir) for role in ROLES}
    wheres = {role: role_where(cfg, role) for role in ROLES}
    resolved = {role: _resolve(llm, wheres[role]) for role, llm in configs.items()}
    for role, llm in configs.items():
        for secret in secret_values(llm):  # e.g. ${oc.env:GW_KEY} in a header: known only once resolved
            redact.add(secret)
        check_urls(resolved[role], wheres[role])
    prices: dict = {}
    for llm in resolved.values():
        prices.update(llm.get("prices") or {})
    caps = _caps(cfg)
    ledger = UsageLedger(prices, caps, redact=redact)
    warnings = _price_warnings(resolved, prices, caps)
    inners: dict[str, ChatCompletionClient] = {}
    caches: dict[tuple, ReplayCache] = {}
    clients: dict[str, ManagedClient] = {}
    checks: list[tuple] = []
    for role, llm in configs.items():
        if "client" not in llm:
            raise LLMSetupError(f"llm config for {role} has no client (llm={llm.get('provider')})")
        # A client whose config declares `role` (the offline designer) plays one role: one per role.
        per_role = {"role": role} if "role" in llm.client else {}
        ident = json.dumps([resolved[role], per_role], sort_keys=True, default=str)
        if ident not in inners:
            users = [r for r, c in resolved.items() if c == resolved[role]]
            who = "" if len(users) == len(ROLES) else f" (for the {', '.join(users)})"
            key = read_key(llm, who)
            if key not in (llm.get("api_key_when_unset"), REPLAY_ONLY_KEY):
                redact.add(key)
            try:
                inners[ident] = instantiate(llm.client, **per_role, **({"api_key": key} if key is not None else {}))
            except Exception as exc:  # noqa: BLE001 - Hydra wraps import and argument errors alike
                raise _build_error(exc, llm, who, wheres[role], redact) from None
            if check and key != REPLAY_ONLY_KEY and llm.get("cache_mode") != "replay":
                checks.append((llm, key, who, wheres[role]))
        retry = RetryPolicy.model_validate(resolved[role].get("retry") or {})
        clients[role] = ManagedClient(inners[ident], role=role, model=str(llm.model), ledger=ledger, retry=retry,
                                      cache=_cache(llm, caches, redact), timeout_s=llm.get("timeout_s"),
                                      settings=answer_settings(resolved[role]), free=bool(llm.get("free")),
                                      redact=redact)
    # After every client is built: config mistakes are told first, without waiting on a network.
    for llm, key, who, where in checks:
        warning = check_key(llm, key, who, timeout_s=float(llm.get("timeout_s") or 10.0), redact=redact, where=where)
        if warning:
            warnings.append(warning)
    return ClientSet(clients=clients, ledger=ledger, redact=redact, warnings=warnings)
