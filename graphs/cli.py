"""`python -m graphs`: validate, cost, hash, export a block file, convert an NB201 arch string, or
build the NB201 accuracy table from the official release. Results are JSON on stdout (block text
for `nb201`); invalid input exits with status 1."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import BlockError, ErrorCode, Issue
from .ir import KINDS, Architecture, Block, parse
from .macro import DATASETS, MACROS, MacroError


def _read(path: str) -> Block | Architecture:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BlockError([Issue(node=None, code=ErrorCode.SYNTAX, message=f"cannot read {path}: {exc.strerror}")]) from None
    return parse(text)


def _issues(obj: Block | Architecture, kind: str) -> list[dict]:
    from .validate import validate

    if isinstance(obj, Block):
        return [i.model_dump(mode="json") for i in validate(obj, kind)]
    out = []
    for section, blk in (("base", obj.base), ("stem", obj.stem), ("downsample", obj.downsample)):
        out += [{**i.model_dump(mode="json"), "section": section} for i in validate(blk, section)]
    return out


def _checked(path: str, kind: str = "base") -> Block | Architecture:
    obj = _read(path)
    issues = _issues(obj, kind)
    if issues:
        raise BlockError([Issue(**{k: v for k, v in i.items() if k != "section"}) for i in issues])
    return obj


def cmd_validate(a) -> int:
    obj = _read(a.file)
    errors = _issues(obj, a.kind)
    _emit({"ok": not errors, "errors": errors})
    return 0 if not errors else 1


def _fit(a):
    """The checked design and its fit in the macro under the budget, as a run applies it (BudgetError
    when it does not fit): unset limits are the macro's defaults."""
    from .cost import Budget, default_budget, fit_design

    obj = _checked(a.file)
    d = default_budget(a.macro)
    budget = Budget(d.max_params if a.max_params is None else a.max_params,
                    d.max_flops if a.max_flops is None else a.max_flops)
    fit = fit_design(obj, a.macro, a.dataset, budget)
    return obj, fit, {"widths": list(fit.widths), "params": fit.params, "flops": fit.flops}


def cmd_cost(a) -> int:
    _emit(_fit(a)[2])
    return 0


def cmd_hash(a) -> int:
    from .hashing import canonical_hash

    obj = _checked(a.file, a.kind)
    blocks = [obj] if isinstance(obj, Block) else [obj.base, obj.stem, obj.downsample]
    _emit({"hash": canonical_hash(blocks[0])} if len(blocks) == 1 else
          {"hash": canonical_hash(obj.base), "stem": canonical_hash(obj.stem),
           "downsample": canonical_hash(obj.downsample)})
    return 0


def cmd_nb201(a) -> int:
    from .nb201 import arch_to_block

    sys.stdout.write(str(arch_to_block(a.arch)))
    return 0


def cmd_nb201_table(a) -> int:
    from .nb201 import TABLE_DATASETS, load_release, release_rows, write_table

    columns, rows = release_rows(load_release(a.release, trust_pickle=a.trust_pickle))
    write_table(a.output, columns, rows)
    _emit({"ok": True, "rows": len(rows), "datasets": list(TABLE_DATASETS), "columns": ["arch", *columns],
           "output": a.output})
    return 0


_TABLE_HELP = """Convert the official NAS-Bench-201 release (NAS-Bench-201-v1_1-096897.pth or
NAS-Bench-201-v1_0-e61699.pth) into the CSV that evaluator nb201_table reads: arch, then
<ds>_val,<ds>_test for cifar10, cifar100 and imagenet16_120, each the 200-epoch accuracy averaged
over the release's seeds (CIFAR-10 valid: cifar10-valid x-valid, test: cifar10 ori-test; CIFAR-100
and ImageNet16-120: x-valid, x-test). The release is a pickle: it is read with
torch.load(weights_only=True), which rebuilds only containers, numbers, strings and tensors; if the
file holds anything else the command stops, and --trust-pickle unpickles it in full, which runs code
from the file: use it only for the release downloaded from its official source."""


def cmd_export(a) -> int:
    from .compile import build_model
    from .export import export_source

    obj, fit, cost = _fit(a)
    compiled = build_model(obj, a.macro, a.dataset, fit.x)
    Path(a.output).write_text(export_source(compiled))
    _emit({**cost, "output": a.output})
    return 0


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m graphs", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a block or architecture file")
    v.add_argument("file")
    v.add_argument("--kind", choices=KINDS, default="base", help="kind of a single block (default base)")
    v.set_defaults(run=cmd_validate)
    for name, fn, hlp in (("cost", cmd_cost, "params and FLOPs (MACs) of the network"),
                          ("export", cmd_export, "write a standalone PyTorch source file")):
        c = sub.add_parser(name, help=hlp)
        c.add_argument("file")
        c.add_argument("--macro", choices=MACROS, default="nader")
        c.add_argument("--dataset", choices=list(DATASETS), default="cifar10")
        c.add_argument("--max-params", type=int, default=None,
                       help="default by macro, as a run: 1.5M (nader), 1.6M (nb201)")
        c.add_argument("--max-flops", type=int, default=None,
                       help="MACs; default by macro, as a run: nader by dataset (0.2G CIFAR, 0.05G IN16), nb201 0.25G")
        if name == "export":
            c.add_argument("-o", "--output", required=True)
        c.set_defaults(run=fn)
    h = sub.add_parser("hash", help="canonical hash of a block")
    h.add_argument("file")
    h.add_argument("--kind", choices=KINDS, default="base")
    h.set_defaults(run=cmd_hash)
    n = sub.add_parser("nb201", help="NB201 arch string to base block text")
    n.add_argument("arch")
    n.set_defaults(run=cmd_nb201)
    t = sub.add_parser("nb201-table", help="NAS-Bench-201 release file to the accuracy table CSV",
                       description=_TABLE_HELP)
    t.add_argument("release", help="the release .pth file")
    t.add_argument("-o", "--output", required=True, help="the CSV to write")
    t.add_argument("--trust-pickle", action="store_true",
                   help="unpickle the release in full if it holds more than plain data (runs code from the file)")
    t.set_defaults(run=cmd_nb201_table)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .cost import BudgetError

    try:
        return args.run(args)
    except BlockError as exc:
        _emit({"ok": False, "errors": [i.model_dump(mode="json") for i in exc.issues]})
    except (BudgetError, MacroError, ValueError, OSError) as exc:
        _emit({"ok": False, "errors": [{"node": None, "code": type(exc).__name__, "message": str(exc)}]})
    return 1
