"""NADER on AutoGen: `python main.py dataset=cifar10 trials=10`. Thin Hydra entry point: it turns
the config into objects and hands them to agents.run."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from agents.factory import RunSetupError, build_run
    from agents.llm.secrets import Redactor, config_secrets, masked_yaml, scrub_files

    for noisy in ("autogen_core", "autogen_agentchat", "httpx", "httpx2", "openai", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # one line per HTTP request is noise here
    console = Console(stderr=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    saved = hydra_saved_configs(run_dir)
    # A key typed on the command line is refused below, but Hydra has already saved it: mask it there.
    scrub_files(saved, Redactor(config_secrets(cfg)))
    (run_dir / "config.yaml").write_text(masked_yaml(cfg))
    try:
        run = build_run(cfg, run_dir, console, saved_configs=saved)
        summary = asyncio.run(run())
    except RunSetupError as exc:
        console.print(f"[red]cannot run:[/] {exc}", soft_wrap=True)  # one line, whatever the terminal width
        sys.exit(1)
    for line in summary.lines():
        console.print(line, soft_wrap=True)
    print(f"run directory: {run_dir}")
    if summary.trials and summary.client_failures == summary.trials:
        console.print(f"[red]every trial failed because the model client failed[/]; see {run_dir}/trials/*/metrics.json")
        sys.exit(2)


def hydra_saved_configs(run_dir: Path) -> list[Path]:
    """The files in which Hydra saved the command line: the job's .hydra/*.yaml and, in a sweep, the
    sweep directory's multirun.yaml, which every job of the sweep shares."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    saved = sorted((run_dir / ".hydra").glob("*.yaml"))
    if hc.mode == RunMode.MULTIRUN:
        saved.append(Path(hc.sweep.dir) / "multirun.yaml")
    return saved


if __name__ == "__main__":
    main()
