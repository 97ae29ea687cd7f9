"""Experiment tracking (`tracking=mlflow`, off by default): each run an MLflow run.

Params: the run's config, flattened (keys masked as in config.yaml). Metrics per trial, with the
trial as the step: valid_acc, test_acc, params, flops, tokens, dollars of the node the trial ended
with. Artifacts at the end: the best block and its standalone model source (best/), report.html.
A resumed run continues its MLflow run (found by the run directory's tag). MLflow is an optional
extra (`pip install ".[tracking]"`). A tracking failure is a warning: the run's own files are the
record.

The default store is a SQLite file, `mlflow.db`, in the directory the command runs from, with the
artifacts in `mlartifacts/` beside it: local, and shared by every run started there, so they can
be compared (`mlflow ui --backend-store-uri sqlite:///mlflow.db`). `tracking.uri` names another
(a tracking server, `http://HOST:5000`, or a database).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["MlflowTracker", "TrackingMissingError", "flat_params", "default_uri"]

RUN_DIR_TAG = "nader.run_dir"
METRICS = ("valid_acc", "test_acc", "params", "flops", "tokens", "dollars")


class TrackingMissingError(ImportError):
    """tracking=mlflow without MLflow installed."""


def default_uri(cwd: Path) -> str:
    return f"sqlite:///{(Path(cwd) / 'mlflow.db').resolve()}"


def flat_params(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"}; MLflow params are flat strings of at most 6000 chars."""
    out: dict[str, str] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


class MlflowTracker:
    def __init__(self, uri: str, experiment: str, run_dir: Path, params: Mapping[str, str]):
        for name in ("mlflow", "alembic"):  # database migrations logged at INFO on first use: noise on screen
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise TrackingMissingError('tracking=mlflow needs MLflow: pip install ".[tracking]"') from exc
        self.run_dir = Path(run_dir).resolve()
        self.ended = False
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            artifacts = None
            if uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd's mlruns/
                artifacts = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
            exp_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        found = self.client.search_runs([exp_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{self.run_dir}'",
                                        max_results=1)
        if found:  # a resumed run continues its MLflow run
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            run = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={RUN_DIR_TAG: str(self.run_dir)})
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=items[i:i + 100])

    def trial(self, trial: int, node) -> None:
        """The metrics of the node trial `trial` ended with, at step `trial`."""
        from mlflow.entities import Metric

        values = {"valid_acc": node.valid_acc, "test_acc": node.test_acc, "params": node.params, "flops": node.flops,
                  "tokens": (node.cost or {}).get("tokens"), "dollars": (node.cost or {}).get("dollars")}
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, trial) for k, v in values.items() if v is not None]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        self.client.set_tag(self.run_id, f"trial.{trial}.status", node.status)

    def end(self, summary, status: str = "FINISHED") -> None:
        best = self.run_dir / "best"
        if best.is_dir():
            self.client.log_artifacts(self.run_id, str(best), "best")
        if (self.run_dir / "report.html").is_file():
            self.client.log_artifact(self.run_id, str(self.run_dir / "report.html"))
        if summary is not None and getattr(summary, "best_valid_acc", None) is not None:
            self.client.log_metric(self.run_id, "best_valid_acc", float(summary.best_valid_acc))
        if summary is not None and getattr(summary, "stopped", None):
            self.client.set_tag(self.run_id, "stopped", summary.stopped)
        self.client.set_terminated(self.run_id, status=status)
        self.ended = True

