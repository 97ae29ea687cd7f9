"""NADER on AutoGen: `python main.py dataset=cifar10 trials=10`. Thin Hydra entry point: it checks
the config, turns it into objects and hands them to agents.run.

Exit codes: 0 done; 1 the run failed while running (e.g. the root could not be trained); 2 a bad
configuration or environment, found before any training or model call (or every trial failed
because the model client failed); 130 stopped by Ctrl-C
(everything finished is saved, and the resume command is printed)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 130
CONF_DIR = Path(__file__).resolve().parent / "conf"


# Hydra plugins the README's sweeps use, by the `hydra/GROUP=NAME` that needs them: (module, extra).
HYDRA_PLUGINS = {"hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "sweeps"),
                 "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "sweeps"),
                 "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "sweeps"),  # conf/hydra/launcher/
                 "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "sweeps"),
                 "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweeps")}


def missing_plugin(args: list[str]) -> str | None:
    """A `hydra/launcher=` or `hydra/sweeper=` choice whose plugin is not installed, said with the
    extra that installs it; None when all are there."""
    import importlib.util

    for arg in args:
        if arg in HYDRA_PLUGINS:
            module, extra = HYDRA_PLUGINS[arg]
            if importlib.util.find_spec(module) is None:
                return f'{arg} needs a Hydra plugin that is not installed: pip install ".[{extra}]"'
    return None


def cli() -> None:
    bad = unknown_group_option(sys.argv[1:]) or missing_plugin(sys.argv[1:])
    if bad:  # Hydra would say it over a dozen lines; one is enough
        print(f"config error: {bad}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    entered: list[bool] = []

    # An absolute path: the same whether main.py runs as a script or is imported (tests/config_driver.py).
    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def task(cfg: DictConfig) -> float | None:
        entered.append(True)
        return run_job(cfg)  # a sweeper (hydra/sweeper=optuna) maximises this

    try:
        task()
    except SystemExit as exc:
        if exc.code == 1 and not entered:  # Hydra refused the command line (unknown option or key)
            raise SystemExit(EXIT_CONFIG) from None
        raise


def unknown_group_option(args: list[str], conf_dir=None) -> str | None:
    """`group=option` arguments naming an option that conf/GROUP/ does not have (a sweep's
    comma-separated options are each checked); None when all are known."""
    conf = Path(conf_dir) if conf_dir else CONF_DIR
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        folder = conf / key
        if "." in key or "/" in key or "(" in value or not folder.is_dir():  # glob(...) and other sweeps: Hydra's
            continue
        valid = sorted(f.stem for f in folder.glob("*.yaml"))
        for option in value.split(","):
            if option.strip() not in valid:
                return f"{key}={option.strip()}: no such option; valid: {', '.join(valid)}"
    return None


def run_job(cfg: DictConfig) -> float | None:
    """Run one job; returns its best validation accuracy (None when nothing was trained)."""
    import asyncio
    import logging

    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from agents.config import ConfigError
    from agents.factory import RunSetupError, build_run, check_config, resume_command
    from agents.interrupt import Interrupt, RunInterrupted
    from agents.llm.secrets import Redactor, config_secrets, scrub_files
    from agents.run import RunError

    for noisy in ("autogen_core", "autogen_agentchat", "httpx", "httpx2", "openai", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per HTTP request is noise here
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log = open(run_dir / "main.log", "a", encoding="utf-8")  # Hydra's job log: the run's lines go there too
    console = Console(file=LogTee(log), soft_wrap=True)  # progress and messages: stderr (and main.log), unwrapped
    saved = hydra_saved_configs(run_dir)
    # A key typed on the command line is refused below, but Hydra has already saved it: mask it there.
    scrub_files(saved, Redactor(config_secrets(cfg)))
    resume = resume_command(HydraConfig.get().overrides.task, run_dir)
    try:
        check_config(cfg, run_dir, console)
        interrupt = Interrupt()
        run = build_run(cfg, run_dir, console, saved_configs=saved, interrupt=interrupt)
    except (ConfigError, RunSetupError) as exc:
        console.print(f"[red]config error:[/] {exc}", soft_wrap=True)  # one line, whatever the terminal width
        sys.exit(EXIT_CONFIG)
    try:
        summary = asyncio.run(run())
    except RunSetupError as exc:
        console.print(f"[red]cannot run:[/] {exc}", soft_wrap=True)
        sys.exit(EXIT_CONFIG)
    except RunError as exc:
        console.print(f"[red]run failed:[/] {exc}", soft_wrap=True)
        sys.exit(EXIT_FAILED)
    except RunInterrupted as exc:
        again = f"trial {exc.trial} was stopped and will run again; " if exc.trial else ""
        console.print(f"[yellow]interrupted {exc.where}[/]: {again}everything finished is saved in {run_dir}",
                      soft_wrap=True)
        console.print(f"resume with: {resume}", soft_wrap=True, markup=False, highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    for line in [*summary.lines(), f"run directory: {run_dir}"]:  # the result: stdout (and main.log)
        print(line)
        log.write(line + "\n")
    log.flush()
    if summary.trials and summary.client_failures == summary.trials:  # most likely the llm config: exit 2
        console.print(f"[red]every trial failed because the model client failed[/]; see {run_dir}/trials/*/metrics.json")
        sys.exit(EXIT_CONFIG)
    return getattr(summary, "best_valid_acc", None)  # None after read=PATH trials=0


class LogTee:
    """A console's file: writes go to the current sys.stderr (a live display may have redirected
    it) and, without terminal control codes, to the run's log."""

    def __init__(self, log):
        import re

        self.log = log
        self._control = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        self.log.write(self._control.sub("", text))
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()


def hydra_saved_configs(run_dir) -> list:
    """The files in which Hydra saved the command line: the job's .hydra/*.yaml and, in a sweep, the
    sweep directory's multirun.yaml, which every job of the sweep shares."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    saved = sorted((Path(run_dir) / ".hydra").glob("*.yaml"))
    if hc.mode == RunMode.MULTIRUN:
        saved.append(Path(hc.sweep.dir) / "multirun.yaml")
    return saved


if __name__ == "__main__":
    cli()
