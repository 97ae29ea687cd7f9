"""Turn a Hydra config into the run's objects: model clients, memory, the training launcher and
the root block. Everything is passed into agents.run; nothing is looked up globally."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console

from graphs.cost import Budget
from graphs.ir import parse_block
from graphs.macro import DEFAULT_ROOTS

from .run import RunError, RunSettings, run_design

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class RunSetupError(RuntimeError):
    """A configuration or environment problem found before or while starting the run."""


def make_clients(cfg: DictConfig, conf_dir: Path = CONF_DIR, check: bool = True):
    """Per-role managed clients, the usage ledger and the redactor (agents.llm.providers)."""
    from .llm.providers import LLMSetupError, build_clients

    try:
        return build_clients(cfg, conf_dir, check=check)
    except LLMSetupError as exc:
        raise RunSetupError(str(exc)) from None


def root_block_text(cfg: DictConfig) -> str:
    if cfg.root_block:
        path = Path(cfg.root_block)
        if not path.is_file():
            raise RunSetupError(f"root_block file not found: {path}")
        return path.read_text()
    default = DEFAULT_ROOTS[cfg.macro.name]
    if default.startswith("|"):
        from graphs.nb201 import arch_to_block

        return str(arch_to_block(default, name="NB201ResNetCell"))
    return default


def make_trainer(cfg: DictConfig, run_dir: Path) -> Callable:
    from training.evaluators import make_evaluator
    from training.launchers import make_launcher
    from training.models import BlockNetwork
    from training.profiles import get_profile
    from training.trials import TrialSpec

    profile = get_profile(OmegaConf.to_container(cfg.trainer, resolve=True))
    ev_kwargs = {}
    if cfg.evaluator.name == "nb201_table":
        ev_kwargs = {"table_path": cfg.evaluator.table, "out_of_space": cfg.evaluator.out_of_space}
    evaluator = make_evaluator(cfg.evaluator.name, **ev_kwargs)
    launch_kwargs = {"workers": cfg.launcher.workers} if cfg.launcher.name == "pool" else {}
    launcher = make_launcher(cfg.launcher.name, evaluator=evaluator, time_limit_s=cfg.launcher.time_limit_s,
                             **launch_kwargs)

    def train(args) -> dict:
        out = run_dir / "trials" / f"{args.trial:04d}" / "train.json"
        spec = TrialSpec(model_factory=BlockNetwork(text=args.block, macro=cfg.macro.name, dataset=cfg.dataset.name,
                                                    x=args.x),
                         dataset=cfg.dataset.name, root=cfg.dataset.root, profile=profile, seed=cfg.seed,
                         trial_id=f"{args.trial:04d}", out=str(out), weights_out=str(out.with_name("weights.pt")),
                         extra={"block": args.block, "macro": cfg.macro.name})
        return launcher.run([spec])[0].metrics()

    return train


def build_run(cfg: DictConfig, run_dir: Path, console: Console, conf_dir: Path = CONF_DIR,
              saved_configs: Sequence[Path] | None = None):
    """`saved_configs`: the files in which Hydra saved the command line (default: run_dir/.hydra/*.yaml;
    main.py adds a sweep's multirun.yaml); keys that reached them are masked once they are known."""
    from tools.memory import MemoryConfig, open_memory

    from .llm.secrets import scrub_files

    settings = RunSettings(dataset=cfg.dataset.name, macro=cfg.macro.name, trials=int(cfg.trials), seed=int(cfg.seed),
                           policy=cfg.search.policy, policy_options=dict(cfg.search.get("options") or {}),
                           budget=Budget(int(cfg.budget.max_params),
                                         None if cfg.budget.max_flops is None else int(cfg.budget.max_flops)),
                           max_rounds=int(cfg.max_rounds), export=bool(cfg.export))
    client_set = make_clients(cfg, conf_dir)
    for warning in client_set.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)  # one line each, like errors
    clients, ledger, redact = client_set.clients, client_set.ledger, client_set.redact
    sources = _read_sources(cfg)
    reader_settings = _reader_settings(cfg) if sources else None
    # Hydra saved the command line before we knew the keys: mask any that reached its files.
    scrub_files(saved_configs if saved_configs is not None else (run_dir / ".hydra").glob("*.yaml"), redact)
    ledger.resume(run_dir / "usage.json")
    root = root_block_text(cfg)
    parse_block(root)
    train = make_trainer(cfg, run_dir)
    mem_cfg = MemoryConfig(url=cfg.memory.url, path=None if cfg.memory.url else str(cfg.memory.path or run_dir / "memory"),
                           embedder=cfg.memory.embedder)

    async def run():
        memory = open_memory(mem_cfg)
        log_filter = _RedactingFilter(redact)
        handlers = logging.getLogger().handlers
        for h in handlers:  # keys must not reach the run's log files either
            h.addFilter(log_filter)
        try:
            added = memory.knowledge.ensure_starter()
            if added:
                console.print(f"knowledge base: {added} starter inspirations loaded")
            reader_lines: list[str] = []
            if sources:
                ledger.trial = "reader"
                reader_lines = await _read(sources, reader_settings, clients["Reader"], memory, run_dir, ledger,
                                           redact, console)
                ledger.save(run_dir / "usage.json")
            if sources and settings.trials == 0:  # read=PATH trials=0: only ingest
                if mem_cfg.path and not cfg.memory.path:
                    console.print(f"the knowledge base is in {mem_cfg.path}: give memory.path={mem_cfg.path} to "
                                  f"the design runs that should use it", soft_wrap=True)
                return ReadOnlySummary(ledger.summary_lines() if ledger.calls else [])
            summary = await run_design(settings, run_dir, root, clients, memory, train, console, ledger=ledger,
                                       redact=redact)
            summary.usage_lines = reader_lines + summary.usage_lines
            return summary
        except RunError as exc:
            raise RunSetupError(str(exc)) from exc
        finally:
            if ledger.calls:  # also when the run failed: what was spent stays on record
                run_dir.mkdir(parents=True, exist_ok=True)
                ledger.save(run_dir / "usage.json")
            memory.close()
            await client_set.close()
            for h in handlers:
                h.removeFilter(log_filter)

    return run


@dataclass
class ReadOnlySummary:
    """The outcome of `read=PATH trials=0`: papers ingested, no design trials. The Reader's lines
    were printed as it went; what is left to show is the usage."""

    usage_lines: list[str]
    trials: int = 0
    client_failures: int = 0

    def lines(self) -> list[str]:
        return self.usage_lines


def _read_sources(cfg: DictConfig) -> list[str]:
    read = cfg.get("read")
    if read is None:
        return []
    sources = [str(x) for x in read] if isinstance(read, ListConfig) else [str(read)]
    for s in sources:
        if not s.strip():  # `read=` with nothing after it: Path("") would be the current folder
            raise RunSetupError("read= is empty: give a PDF, a .txt/.md file, a folder of them, or arxiv:QUERY")
        if not s.startswith("arxiv:") and not Path(s).expanduser().exists():
            raise RunSetupError(f"read={s}: no such file or folder (give a PDF, a .txt/.md file, a folder of them, "
                                f"or arxiv:QUERY)")
    return sources


def _reader_settings(cfg: DictConfig):
    from .reader import ReaderSettings

    try:
        return ReaderSettings.model_validate(OmegaConf.to_container(cfg.reader, resolve=True))
    except ValueError as exc:
        e = exc.errors()[0]
        raise RunSetupError(f"reader.{e['loc'][0]}: {e['msg']} (got {e.get('input')!r})") from None


async def _read(sources: list[str], settings, client, memory, run_dir: Path, ledger, redact, console) -> list[str]:
    from agents.tokens import count_tokens

    from .reader import ReaderError, ingest

    try:
        report = await ingest(sources, client, memory.knowledge, run_dir, settings, count_tokens,
                              model=getattr(client, "model", type(client).__name__), redact=redact,
                              progress=lambda text: console.print(text, soft_wrap=True),
                              events=lambda: ledger.take_events("reader"), should_stop=ledger.exceeded)
    except ReaderError as exc:
        raise RunSetupError(str(exc)) from None
    for line in report.lines():
        console.print(line, soft_wrap=True)
    return report.lines()


class _RedactingFilter:
    """A logging filter that masks secrets in records before any handler writes them."""

    def __init__(self, redact):
        self._redact = redact

    def filter(self, record) -> bool:
        text = record.getMessage()
        if record.exc_info:  # tracebacks quote exception texts: redact them too, as part of the message
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self._redact(text), ()
        return True
