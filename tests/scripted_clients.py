"""Model clients for the team tests. The scripted one is the offline designer for Proposer and
Reflector, while the Modifier follows a fixed script; the failing one raises on every call."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from autogen_core.models import UserMessage
from hydra import compose, initialize_config_dir
from rich.console import Console

from agents.offline.client import OfflineDesignerClient, _from, _tool_results, _turn
from agents.factory import build_run
from agents.protocol import MAX_ROUNDS, SUBMITTED
from conftest import ROOT
from graphs.tree import ModificationTree

# Edits on the ResNet basic block (node 8 is the last ReLU, node 1 the output).
ONE_INPUT_ADD = [{"kind": "insert_on_edge", "src": 8, "dst": 1, "op": "Add", "id": 20}]
CONNECT_SHORTCUT = [{"kind": "add_edge", "src": 0, "dst": 20}]

SCENARIOS = {
    # trial -> edits per round; a trial not listed uses the offline designer
    "fix_then_valid": {1: [ONE_INPUT_ADD, CONNECT_SHORTCUT]},
    "always_invalid": {1: [ONE_INPUT_ADD, [], [], [], [], []]},
    "no_change": {1: [[]]},
    # NB201 root cell (ResNet-like): node 3 is the conv of edge 1<-0.
    "nb201_repeat_then_new": {1: [[], [{"kind": "set_cell_edge", "edge": "2<-0", "op": "nor_conv_1x1"}]]},
    "nb201_outside_then_fixed": {1: [[{"kind": "set_op", "id": 3, "op": "Conv2d(out_channels=C,kernel_size=5,bias=False)"}],
                                     [{"kind": "set_op", "id": 3, "op": "Conv2d(out_channels=C,kernel_size=1,bias=False)"}]]},
}


class ScriptedModifierClient(OfflineDesignerClient):
    """As a Modifier, plays the scenario's edits on the trials it lists; every other role and trial
    is the offline designer's."""

    def __init__(self, role: str, scenario: str, seed: int = 0, max_rounds: int = MAX_ROUNDS):
        super().__init__(role, seed=seed, fault_rate=0.0, max_rounds=max_rounds)
        self.script = SCENARIOS[scenario]

    def _modifier(self, messages, tools):
        return self._scripted(messages, tools, super()._modifier)

    def _cell_modifier(self, messages, tools):  # the same script inside the NB201 space
        return self._scripted(messages, tools, super()._cell_modifier)

    def _scripted(self, messages, tools, otherwise):
        trial = self._trial(self._task(messages))
        if trial not in self.script:
            return otherwise(messages, tools)
        done = _tool_results(_turn(messages))
        if done and done[-1][0] == "validate_block":
            return f"{SUBMITTED}: scripted edits."
        if done:
            return self._call("validate_block", {"note": "scripted"})
        round_no = len(_from(messages, "Reflector")) - 1  # the first Reflector message is advice
        edits = self.script[trial][min(round_no, len(self.script[trial]) - 1)]
        if not edits:
            return self._call("validate_block", {"note": "scripted: no change this round"})
        return self._call("edit_block", {"edits": edits})


class FailingClient(OfflineDesignerClient):
    """A model service that is down."""

    async def create(self, messages, **kwargs):
        raise ConnectionError("model service unavailable (scripted outage)")


def texts(records: list[dict], role: str, kind: str = "TextMessage") -> list[str]:
    return [r["content"] if isinstance(r["content"], str) else json.dumps(r["content"])
            for r in records if r["role"] == role and r["type"] == kind]


__all__ = ["ScriptedModifierClient", "FailingClient", "UserMessage", "texts"]


def run_loop(run_dir: Path, overrides: list[str]):
    """The design loop in this process on conf/ with `overrides`: (summary, tree, run_dir)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = asyncio.run(build_run(cfg, run_dir, Console(file=open("/dev/null", "w")))())
    return summary, ModificationTree.load(run_dir / "tree.json"), run_dir


def records(run_dir: Path, trial: int) -> list[dict]:
    """A trial's transcript records, in order."""
    path = run_dir / "trials" / f"{trial:04d}" / "transcript.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]
