"""`python -m training train FILE ...`: train (or look up) one block file and print its final metrics.

stdout gets one JSON document: the result's metrics (TrialResult.metrics(), without the per-epoch
history) or, for bad input, `{"ok": false, "errors": [{"node", "code", "message"}...]}`, the shape
`python -m graphs` uses. Exit status 0 for an ok result, 1 for a failed result or bad input, 2 for a
`--device` or `--out` this machine cannot use: one line on stderr, nothing on stdout, checked
before anything is loaded or trained.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "parser", "CliError", "device_problem", "out_problem"]

DEVICES = "cpu, cuda, cuda:N, mps"


class CliError(Exception):
    """Bad input: reported as typed JSON errors, exit status 1."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(str(e.get("message")) for e in errors))


def _error(code: str, message: str, node: int | None = None) -> dict:
    return {"node": node, "code": code, "message": message}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2
        raise CliError([_error("usage_error", f"{self.prog}: {message}")])


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m training", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train (or look up) a block file and print its final metrics as JSON")
    t.add_argument("file", help="a base block or a base/stem/downsample architecture in the block text format")
    t.add_argument("--macro", default="nader", help="nader (widths fitted to the budget) or nb201 (the NB201 skeleton)")
    t.add_argument("--dataset", default="digits", help="cifar10, cifar100, imagenet16-120 or digits (offline)")
    t.add_argument("--trainer", default="smoke", help="profile name (nb201, short, smoke) or a profile YAML path")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--split-seed", type=int, default=None, help="seed of the data split (default: --seed)")
    t.add_argument("--root", default=None, help="dataset directory (default: the datasets' default root)")
    t.add_argument("--x", type=int, default=None, help="nader base width (default: fitted to the budget)")
    t.add_argument("--evaluator", default="train", help="train, or nb201_table (needs --table)")
    t.add_argument("--table", default=None, help="NB201 table CSV for --evaluator nb201_table")
    t.add_argument("--out-of-space", choices=("train", "skip"), default="train",
                   help="nb201_table: train an out-of-space candidate, or return 'not in table'")
    t.add_argument("--device", default=None, help=f"{DEVICES} (default: cuda when available)")
    t.add_argument("--time-limit", type=float, default=None, help="seconds; a longer run ends as failed")
    t.add_argument("--trial-id", default="")
    t.add_argument("--out", default=None, help="also write the full result (with epochs) to this JSON path")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="epoch bar (default: when stdout is a terminal)")
    return p


def device_problem(device: str | None) -> str | None:
    """Why `device` cannot train here (not a device name, or not on this machine), or None."""
    if device is None:
        return None
    hit = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device)
    if hit is None or (hit.group(2) is not None and hit.group(1) != "cuda"):
        return f"--device {device!r} is not a device; valid: {DEVICES}"
    import torch

    kind, index = hit.group(1), hit.group(2)
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"--device {device}: CUDA is not available on this machine; use --device cpu"
        if index is not None and int(index) >= count:
            return f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    if kind == "mps" and not torch.backends.mps.is_available():
        return f"--device {device}: MPS is not available on this machine; use --device cpu"
    return None


def out_problem(out: str | None) -> str | None:
    """Why the result file `out` could not be written after training, or None. Missing folders are
    made when it is written, so the nearest existing folder above it must take a new file."""
    if out is None:
        return None
    path = Path(out).expanduser()
    if not path.name or path.is_dir():
        return f"--out {out} is a folder; give a file path such as {Path(out) / 'result.json'}"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, not a folder"
    try:  # a real write: permission bits say nothing for root, nor for read-only or virtual file systems
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"--out {out}: cannot write in {parent} ({e.strerror or e})"
    return None


def _spec(a):
    """The trial for parsed arguments; CliError for anything wrong before training starts."""
    from graphs.cost import BudgetError
    from graphs.errors import BlockError
    from graphs.macro import DATASETS, MacroError

    from .datasets import available_datasets
    from .evaluators import EVALUATORS, make_evaluator
    from .models import MACROS, BlockNetwork
    from .profiles import ProfileError, get_profile
    from .trials import TrialSpec

    errors = []
    if a.macro not in MACROS:
        errors.append(_error("unknown_macro", f"unknown macro {a.macro!r}; valid macros: {', '.join(MACROS)}"))
    known = [d for d in available_datasets() if d in DATASETS]
    if a.dataset not in known:
        errors.append(_error("unknown_dataset", f"unknown dataset {a.dataset!r}; valid datasets: {', '.join(known)}"))
    if a.evaluator not in EVALUATORS:
        errors.append(_error("unknown_evaluator",
                             f"unknown evaluator {a.evaluator!r}; valid evaluators: {', '.join(sorted(EVALUATORS))}"))
    elif a.evaluator == "nb201_table" and not a.table:
        errors.append(_error("missing_table", "--evaluator nb201_table needs --table PATH (the NB201 CSV)"))
    try:
        profile = get_profile(a.trainer)
    except ProfileError as e:
        errors.append(_error("ProfileError", str(e)))
    try:
        text = Path(a.file).read_text()
    except (OSError, UnicodeDecodeError) as e:
        errors.append(_error("syntax_error", f"cannot read {a.file}: {getattr(e, 'strerror', None) or e}"))
        text = None
    if errors:
        raise CliError(errors)

    net = BlockNetwork(text, a.macro, a.dataset, a.x)
    issues = net.issues()
    if issues:
        raise CliError(issues)
    if a.evaluator == "train" or a.macro == "nader":  # the table needs no width; training does
        try:
            net = net.resolved()
        except BlockError as e:
            raise CliError([i.model_dump(mode="json") for i in e.issues]) from None
        except (BudgetError, MacroError) as e:
            raise CliError([_error(type(e).__name__, str(e))]) from None
    kwargs = {"progress": a.progress}
    if a.evaluator == "nb201_table":
        kwargs.update(table_path=a.table, out_of_space=a.out_of_space)
    evaluator = make_evaluator(a.evaluator, **kwargs)
    spec = TrialSpec(model_factory=net, dataset=a.dataset, root=a.root, profile=profile, seed=a.seed,
                     split_seed=a.split_seed, trial_id=a.trial_id, time_limit_s=a.time_limit, device=a.device,
                     out=a.out, extra={"block": text, "macro": a.macro})
    return evaluator, spec


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    try:
        a = parser().parse_args(argv)
    except CliError as e:
        _emit({"ok": False, "errors": e.errors})
        return 1
    for problem in (device_problem(a.device), out_problem(a.out)):
        if problem:
            sys.stderr.write(f"python -m training: {problem}\n")
            return 2
    try:
        evaluator, spec = _spec(a)
    except CliError as e:
        _emit({"ok": False, "errors": e.errors})
        return 1
    result = evaluator.evaluate(spec)
    _emit(result.metrics())
    return 0 if result.ok else 1
