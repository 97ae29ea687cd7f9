"""NADER on AutoGen: `python main.py dataset=cifar10 trials=10`. Thin Hydra entry point: it turns
the config into objects and hands them to agents.run."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from rich.console import Console

    from agents.factory import RunSetupError, build_run

    logging.getLogger("autogen_core").setLevel(logging.WARNING)
    logging.getLogger("autogen_agentchat").setLevel(logging.WARNING)
    console = Console(stderr=True)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    try:
        run = build_run(cfg, run_dir, console)
        summary = asyncio.run(run())
    except RunSetupError as exc:
        console.print(f"[red]cannot run:[/] {exc}")
        sys.exit(1)
    for line in summary.lines():
        console.print(line)
    print(f"run directory: {run_dir}")
    if summary.trials and summary.client_failures == summary.trials:
        console.print(f"[red]every trial failed because the model client failed[/]; see {run_dir}/trials/*/metrics.json")
        sys.exit(2)


if __name__ == "__main__":
    main()
