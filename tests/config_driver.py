"""Runs main.py's real entry point (Hydra included) once per case in one process, so that a table
of bad configurations costs one interpreter start-up. Reads a JSON list of argument lists on stdin;
prints one JSON object per case: exit code, stderr, stdout and the seconds it took (reported by
the test, never asserted)."""
from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main  # noqa: E402


def run_case(args: list[str]) -> dict:
    err, out = io.StringIO(), io.StringIO()
    sys.argv = ["main.py", *args]
    start = time.monotonic()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main.cli()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - an escaping exception is what the test looks for
            import traceback

            traceback.print_exc(file=err)
            code = f"raised {type(exc).__name__}"
    return {"args": args, "code": code, "stderr": err.getvalue(), "stdout": out.getvalue(),
            "seconds": round(time.monotonic() - start, 2)}


if __name__ == "__main__":
    for case in json.load(sys.stdin):
        print(json.dumps(run_case(case)), flush=True)
