"""Turn a Hydra config into the run's objects: model clients, memory, the training launcher and
the root block. Everything is passed into agents.run; nothing is looked up globally."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

from graphs.cost import Budget, default_budget
from graphs.ir import parse_block
from graphs.macro import DEFAULT_ROOTS

from .interrupt import Interrupt, RunInterrupted
from .run import RunSettings, run_design

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
    """The root block's text: the file `root_block` names, or the macro's default root."""
    if cfg.root_block:
        path = Path(cfg.root_block).expanduser()
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise RunSetupError(f"root_block={cfg.root_block}: not a UTF-8 text file (give a base block in "
                                f"the block text format)") from None
        except OSError as exc:
            raise RunSetupError(f"root_block={cfg.root_block}: cannot read it ({exc.strerror})") from None
    default = cfg.space.root if cfg.space.name == "nb201" else DEFAULT_ROOTS[cfg.macro.name]
    if default.startswith("|"):
        from graphs.nb201 import arch_to_block

        return str(arch_to_block(default, name="NB201ResNetCell"))
    return default


def run_space(cfg: DictConfig):
    """The design space the config names (graphs.space)."""
    from graphs.space import make_space

    return make_space(cfg.space.name, cfg.space.root, blind_seed=int(cfg.seed) if cfg.space.get("blind") else None)


def run_designer(cfg: DictConfig):
    """The baseline designer the config names; None for the team of agents."""
    from .designers import make_designer

    options = {k: v for k, v in OmegaConf.to_container(cfg.designer, resolve=True).items() if k != "name"}
    return make_designer(cfg.designer.name, **options)


def team_parts(cfg: DictConfig):
    """The team's parts the config switches on (agents.team.TeamParts); all of them for a baseline."""
    from .team import TeamParts

    if cfg.designer.name != "team":
        return TeamParts()
    return TeamParts(**{k: bool(cfg.designer.get(k, True)) for k in ("knowledge", "experience", "feedback")})


def run_scorer(cfg: DictConfig):
    """The proxies every candidate is scored with (the screening proxy among them when screening);
    None when there are none."""
    from training.screening import ProxyScorer

    names = list(cfg.proxies.names)
    if int(cfg.screen.k) > 1 and cfg.screen.proxy not in names:
        names.append(str(cfg.screen.proxy))
    if not names:
        return None
    return ProxyScorer(tuple(names), cfg.dataset.name, cfg.macro.name, cfg.dataset.root, int(cfg.proxies.batch),
                       int(cfg.seed))


def trainer_label(cfg: DictConfig) -> str:
    """The trainer profile as the screen and the summary name it: a table look-up trains nothing; a
    development schedule says so (dataset=cifar10 with trainer=smoke is not the NB201 protocol)."""
    if cfg.evaluator.name == "nb201_table":
        return f"none (accuracies looked up in the NB201 table; out-of-space designs: {cfg.evaluator.out_of_space})"
    kind = "the NB201 protocol" if cfg.trainer.full_protocol else "a development schedule, not the NB201 protocol"
    return f"{cfg.trainer.name}, {cfg.trainer.epochs} epochs ({kind})"


def run_budget(cfg: DictConfig) -> Budget:
    """budget.max_params / max_flops, each null meaning the macro's default (graphs.cost)."""
    default = default_budget(cfg.macro.name)
    params, flops = cfg.budget.max_params, cfg.budget.max_flops
    return Budget(default.max_params if params is None else int(params),
                  default.max_flops if flops is None else int(flops))


def check_root(text: str, cfg: DictConfig, budget: Budget) -> str:
    """The root block, parsed, validated as a base block and fitted to the budget at start-up, so
    that a bad root is a one-line error before anything trains. Returns its canonical text."""
    from graphs.cost import BudgetError, fit_design
    from graphs.errors import BlockError
    from graphs.validate import validate

    where = (f"root_block={cfg.root_block}" if cfg.root_block else
             f"space.root={cfg.space.root}" if cfg.space.name == "nb201" else f"the {cfg.macro.name} macro's default root")
    if not text.strip():
        raise RunSetupError(f"{where}: the file is empty (give a base block in the block text format)")
    try:
        block = parse_block(text)
    except BlockError as exc:
        raise RunSetupError(f"{where}: not a block: {_first_line(exc)}") from None
    issues = validate(block, "base")
    if issues:
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise RunSetupError(f"{where}: not a valid base block: node {first.node} [{first.code.value}] "
                            f"{first.message}{more}")
    outside = run_space(cfg).issues(block)
    if outside:
        raise RunSetupError(f"{where}: not in the design space space={cfg.space.name}: {outside[0].message}")
    try:
        fit_design(block, cfg.macro.name, cfg.dataset.name, budget)
    except BudgetError as exc:
        raise RunSetupError(f"{where}: does not fit the budget: {exc}") from None
    return str(block)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_config(cfg: DictConfig, run_dir: Path, console: Console) -> None:
    """The whole config against the schema (agents.config), then, when `run_dir` holds a run, the
    config it was started with: keys that change what the results mean must be the same. Writes
    the run's config.yaml (resolved, secrets masked) when the run is new. ConfigError otherwise."""
    import yaml

    from .config import ConfigError, limit_changes, result_changes, validate_config
    from .llm.secrets import masked_yaml

    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(key, _first_line(exc)) from None
    validate_config(OmegaConf.to_container(resolved))
    now_text = masked_yaml(resolved)
    saved_path = run_dir / "config.yaml"
    if (run_dir / "tree.json").exists():
        _check_saved_tree(run_dir / "tree.json")  # a corrupt tree is the first thing to say
        if not saved_path.is_file():
            console.print(f"[yellow]warning:[/] {saved_path} is missing: the resumed run's config cannot be "
                          f"compared with the one it was started with", soft_wrap=True)
            return
        saved = yaml.safe_load(saved_path.read_text()) or {}
        now = yaml.safe_load(now_text)
        changed = result_changes(saved, now)
        if changed:
            raise ConfigError("", f"cannot resume {run_dir}: {', '.join(changed)} differ from the config it was "
                                  f"started with ({saved_path}); start a new run for another setting")
        extended = limit_changes(saved, now)
        if extended:
            console.print(f"resuming with changed {', '.join(extended)} (the results keep their meaning)",
                          soft_wrap=True)
            logging.getLogger("nader.run").info("resumed with changed keys: %s", ", ".join(extended))
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    saved_path.write_text(now_text)


def resume_command(overrides: Sequence[str], run_dir: Path) -> str:
    """The command that resumes this run: the same overrides, in the same run directory."""
    import shlex

    kept = [o for o in overrides if not o.startswith(("hydra.run.dir=", "hydra/"))]
    return " ".join(["python main.py", *map(shlex.quote, kept), shlex.quote(f"hydra.run.dir={run_dir}")])


def make_trainer(cfg: DictConfig, run_dir: Path, interrupt: Interrupt | None = None,
                 console: Console | None = None, on_epoch: Callable[[int, int, int], None] | None = None) -> Callable:
    """The run's `train(TrainArgs) -> metrics`: the launcher and evaluator the config names, with
    an explicit thread count per training and the trial's time limit (`launcher.time_limit_s`;
    `auto` is resolved from the root's training time, which train() sees first, or which the
    saved tree holds when the run resumes). A Ctrl-C during training stops it at once (see
    agents.interrupt)."""
    from training.evaluators import make_evaluator
    from training.launchers import auto_time_limit, default_threads, make_launcher
    from training.models import BlockNetwork
    from training.profiles import get_profile
    from training.trials import TrialSpec

    profile = get_profile(OmegaConf.to_container(cfg.trainer, resolve=True))
    interrupt = interrupt or Interrupt()
    ev_kwargs: dict = {"progress": cfg.progress} if cfg.evaluator.name == "train" else {}
    if on_epoch is not None and cfg.evaluator.name == "train" and cfg.launcher.name == "inprocess":
        # The run's live display shows the epoch: no second bar of the trainer's own.
        ev_kwargs = {"progress": False, "on_epoch": lambda trial_id, e, n: on_epoch(int(trial_id or 0), e, n)}
    if cfg.evaluator.name == "nb201_table":
        ev_kwargs = {"table_path": cfg.evaluator.table, "out_of_space": cfg.evaluator.out_of_space}
    evaluator = make_evaluator(cfg.evaluator.name, **ev_kwargs)
    in_flight = int(cfg.parallel)
    threads = cfg.launcher.threads or default_threads(in_flight)
    launch_kwargs: dict = {}
    if cfg.launcher.name == "pool":
        launch_kwargs = {"workers": cfg.launcher.workers, "threads_per_worker": threads}
    elif cfg.launcher.name == "ray":
        launch_kwargs = {"address": cfg.launcher.address, "threads": threads,
                         "resources": dict(cfg.launcher.resources or {})}
    else:  # in this process: trials side by side train in threads that share torch's pool
        import torch

        torch.set_num_threads(threads)
    launcher = make_launcher(cfg.launcher.name, evaluator=evaluator, **launch_kwargs)
    setting = cfg.launcher.time_limit_s
    root_seconds: list[float] = []  # the root's training time, once known

    def limit(trial: int) -> float | None:
        if trial == 0:
            return None  # the root is the reference every trial is measured against, not a trial
        if setting != "auto":
            return setting
        if cfg.evaluator.name != "train":
            return None  # a table look-up trains nothing
        if not root_seconds:
            root_seconds.append(_saved_root_seconds(run_dir / "tree.json"))
        return auto_time_limit(root_seconds[0], in_flight)

    verb = "training" if cfg.evaluator.name == "train" else "evaluating"

    def train(args) -> dict:
        out = run_dir / "trials" / f"{args.trial:04d}" / "train.json"
        spec = TrialSpec(model_factory=BlockNetwork(text=args.block, macro=cfg.macro.name, dataset=cfg.dataset.name,
                                                    x=args.x),
                         dataset=cfg.dataset.name, root=cfg.dataset.root, profile=profile, seed=cfg.seed,
                         trial_id=f"{args.trial:04d}", out=str(out), weights_out=str(out.with_name("weights.pt")),
                         time_limit_s=limit(args.trial), extra={"block": args.block, "macro": cfg.macro.name})
        with interrupt.training():
            if console is not None and args.trial:
                limit_note = f" (limit {spec.time_limit_s:.0f} s)" if spec.time_limit_s else ""
                console.print(f"  {verb} the design of trial {args.trial}{limit_note}")
            m = launcher.run([spec])[0].metrics()
        if args.trial == 0 and m.get("status") == "ok" and not root_seconds:
            root_seconds.append(float(m.get("wall_time_s") or 0.0))
        return m

    return train


def _saved_root_seconds(tree_path: Path) -> float:
    """The root's training time in a saved tree (0 when there is none)."""
    from graphs.tree import ModificationTree

    if not tree_path.is_file():
        return 0.0
    tree = ModificationTree.load(tree_path)  # checked by build_run before the run starts
    return float((tree.get(0).metrics or {}).get("wall_time_s") or 0.0) if len(tree) else 0.0


def build_run(cfg: DictConfig, run_dir: Path, console: Console, conf_dir: Path = CONF_DIR,
              saved_configs: Sequence[Path] | None = None, interrupt: Interrupt | None = None):
    """Everything that can be checked before any training or model call is checked here and fails
    as RunSetupError: model clients and keys, papers to read, the root block, a saved tree to resume,
    the memory server. Returns the coroutine function that runs the job. `saved_configs`: the files
    in which Hydra saved the command line (default: run_dir/.hydra/*.yaml; main.py adds a sweep's
    multirun.yaml); keys that reached them are masked once they are known."""
    from tools.memory import open_memory

    from .llm.ledger import LedgerError
    from .llm.secrets import scrub_files

    interrupt = interrupt or Interrupt()
    budget = run_budget(cfg)
    settings = RunSettings(dataset=cfg.dataset.name, macro=cfg.macro.name, trials=int(cfg.trials), seed=int(cfg.seed),
                           policy=cfg.search.policy, policy_options=dict(cfg.search.get("options") or {}),
                           budget=budget, max_rounds=int(cfg.max_rounds), export=bool(cfg.export),
                           space=run_space(cfg), designer=run_designer(cfg), scorer=run_scorer(cfg),
                           screen_k=int(cfg.screen.k), screen_proxy=str(cfg.screen.proxy),
                           parallel=int(cfg.parallel), trainer=trainer_label(cfg), team_parts=team_parts(cfg))
    root = check_root(root_block_text(cfg), cfg, budget)
    _check_saved_tree(run_dir / "tree.json")
    sources = _read_sources(cfg)
    reader_settings = _reader_settings(cfg) if sources else None
    mem_cfg = _memory_config(cfg, run_dir)
    client_set = make_clients(cfg, conf_dir)
    for warning in client_set.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)  # one line each, like errors
    clients, ledger, redact = client_set.clients, client_set.ledger, client_set.redact
    if settings.space.blind is not None:  # the design roles see the cell's ops under neutral names only
        from .llm.blind import blind_clients

        clients = blind_clients(clients, settings.space.blind)
    # Hydra saved the command line before we knew the keys: mask any that reached its files.
    scrub_files(saved_configs if saved_configs is not None else (run_dir / ".hydra").glob("*.yaml"), redact)
    try:
        ledger.resume(run_dir / "usage.json")
    except LedgerError as exc:
        raise RunSetupError(str(exc)) from None
    from .progress import RunProgress, is_live

    live = is_live(cfg.progress, console)
    # A live display draws on its own console: the run's lines (console, which may also feed main.log)
    # reach the screen above it through the display's redirect of stderr.
    progress = RunProgress(Console(stderr=True) if live else console, live, int(cfg.parallel))
    train = make_trainer(cfg, run_dir, interrupt, console, on_epoch=progress.epoch if progress.live else None)
    settings = dataclasses.replace(settings, tracker=_tracker(cfg, run_dir, redact), progress=progress)

    async def run():
        from tools.memory.errors import MemoryStoreError

        from .llm.errors import one_line_failures

        with interrupt.install(), one_line_failures():
            try:
                memory = open_memory(mem_cfg)
            except MemoryStoreError as exc:
                raise RunSetupError(f"memory: {_first_line(exc)}") from None
            log_filter = _RedactingFilter(redact)
            handlers = logging.getLogger().handlers
            for h in handlers:  # keys must not reach the run's log files either
                h.addFilter(log_filter)
            try:
                reader_lines: list[str] = []
                if sources:
                    with ledger.charging("reader"):
                        reader_lines = await _read(sources, reader_settings, clients["Reader"], memory, run_dir,
                                                   ledger, redact, console)
                    ledger.save(run_dir / "usage.json")
                if sources and settings.trials == 0:  # read=PATH trials=0: only ingest
                    if mem_cfg.path and not cfg.memory.path:
                        console.print(f"the knowledge base is in {mem_cfg.path}: give memory.path={mem_cfg.path} "
                                      f"to the design runs that should use it", soft_wrap=True)
                    return ReadOnlySummary(ledger.summary_lines() if ledger.calls else [])
                summary = await run_design(settings, run_dir, root, clients, memory, train, console, ledger=ledger,
                                           redact=redact, interrupt=interrupt)
                summary.usage_lines = reader_lines + summary.usage_lines
                return summary
            except asyncio.CancelledError:
                if not interrupt.requested:
                    raise
                raise RunInterrupted(None, "before the trials") from None
            finally:
                if settings.tracker is not None and not settings.tracker.ended:  # failed or interrupted
                    try:
                        settings.tracker.end(None, status="KILLED" if interrupt.requested else "FAILED")
                    except Exception:  # noqa: BLE001 - tracking never hides the run's own outcome
                        pass
                if ledger.calls:  # also when the run failed: what was spent stays on record
                    run_dir.mkdir(parents=True, exist_ok=True)
                    ledger.save(run_dir / "usage.json")
                memory.close()
                await client_set.close()
                for h in handlers:
                    h.removeFilter(log_filter)

    return run


def _tracker(cfg: DictConfig, run_dir: Path, redact):
    """tracking=mlflow: the run's MLflow run, opened now (a store that cannot be opened is a setup
    error, before any training); None when tracking is off."""
    if cfg.tracking.name != "mlflow":
        return None
    from .tracking import MlflowTracker, default_uri, flat_params

    uri = cfg.tracking.uri or default_uri(Path.cwd())
    params = {k: redact(v) for k, v in flat_params(OmegaConf.to_container(cfg, resolve=True)).items()}
    try:
        return MlflowTracker(uri, cfg.tracking.experiment, run_dir, params)
    except Exception as exc:  # noqa: BLE001 - a bad URI, an unreachable server, a locked database
        raise RunSetupError(f"tracking.uri={uri}: cannot open the MLflow store: {_first_line(exc)}") from None


def _memory_config(cfg: DictConfig, run_dir: Path):
    """The memory's config; a Qdrant server named by memory.url must answer now, not mid-run."""
    from tools.memory import MemoryConfig
    from tools.memory.config import make_client
    from tools.memory.errors import MemoryStoreError

    mem_cfg = MemoryConfig(url=cfg.memory.url, path=None if cfg.memory.url else str(cfg.memory.path or run_dir / "memory"),
                           embedder=cfg.memory.embedder)
    if mem_cfg.url:
        try:
            make_client(mem_cfg).close()
        except MemoryStoreError as exc:
            raise RunSetupError(f"memory.url={mem_cfg.url}: {_first_line(exc)}") from None
    return mem_cfg


def _check_saved_tree(path: Path) -> None:
    """A run directory's tree.json must load before a resume starts; it is only read, never changed."""
    from graphs.tree import ModificationTree, TreeFileError

    if not path.exists():
        return
    try:
        ModificationTree.load(path)
    except TreeFileError as exc:
        raise RunSetupError(f"cannot resume: {_first_line(exc)} (the file is left as it is; move it away to "
                            f"start this run directory afresh)") from None
    except OSError as exc:
        raise RunSetupError(f"cannot resume: cannot read {path} ({exc.strerror})") from None


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
    """The `read` sources as a list (checked by the config schema: each exists or is arxiv:QUERY)."""
    read = cfg.get("read")
    if read is None:
        return []
    return [str(x) for x in read] if isinstance(read, ListConfig) else [str(read)]


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
