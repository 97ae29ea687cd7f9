"""Turn a Hydra config into the run's objects: model clients, memory, the training launcher and
the root block. Everything is passed into agents.run; nothing is looked up globally."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from graphs.cost import Budget
from graphs.ir import parse_block

from .run import RunError, RunSettings, run_design

ROLES = ("Reader", "Proposer", "Modifier", "Reflector")

DEFAULT_ROOTS = {
    "nader": """##ResNetBasic##
0:input
1:output
2:Conv2d(out_channels=C,kernel_size=3)
3:BN
4:ReLU
5:Conv2d(out_channels=C,kernel_size=3)
6:BN
7:Add
8:ReLU
0->2
2->3
3->4
4->5
5->6
6,0->7
7->8
8->1
""",
    "nb201": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
}


class RunSetupError(RuntimeError):
    """A configuration or environment problem found before or while starting the run."""


def make_clients(llm: DictConfig) -> dict:
    from hydra.utils import instantiate

    try:
        default = instantiate(llm.client)
        roles = {r: instantiate(c) for r, c in (llm.get("roles") or {}).items()}
    except Exception as exc:  # noqa: BLE001 - Hydra wraps import and argument errors alike
        raise RunSetupError(f"cannot build the model client from llm config: {exc}") from exc
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise RunSetupError(f"llm.roles names unknown roles {sorted(unknown)}; valid roles: {', '.join(ROLES)}")
    return {r: roles.get(r, default) for r in ROLES}


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


async def read_paper(path: Path, client, memory, run_dir: Path) -> int:
    """Run the Reader on one paper (plain text; PDF and arXiv ingestion come with the Reader issue)."""
    from tools.memory_tools import add_inspiration_tool

    from .team import reader_team
    from .transcript import Transcript

    if not path.is_file():
        raise RunSetupError(f"paper not found: {path}")
    text = path.read_text(errors="replace")
    log = Transcript()
    before = memory.knowledge.count()
    async for item in reader_team(client, [add_inspiration_tool(memory.knowledge)]).run_stream(
            task=f"TITLE: {text.strip().splitlines()[0] if text.strip() else path.stem}\n{text}"):
        log.add(item)
    log.write(run_dir / "reader" / path.stem, f"Reader: {path.name}")
    return memory.knowledge.count() - before


def build_run(cfg: DictConfig, run_dir: Path, console: Console):
    from tools.memory import MemoryConfig, open_memory

    settings = RunSettings(dataset=cfg.dataset.name, macro=cfg.macro.name, trials=int(cfg.trials), seed=int(cfg.seed),
                           policy=cfg.search.policy, policy_options=dict(cfg.search.get("options") or {}),
                           budget=Budget(int(cfg.budget.max_params),
                                         None if cfg.budget.max_flops is None else int(cfg.budget.max_flops)),
                           max_rounds=int(cfg.max_rounds), export=bool(cfg.export))
    clients = make_clients(cfg.llm)
    root = root_block_text(cfg)
    parse_block(root)
    train = make_trainer(cfg, run_dir)
    mem_cfg = MemoryConfig(url=cfg.memory.url, path=None if cfg.memory.url else str(cfg.memory.path or run_dir / "memory"),
                           embedder=cfg.memory.embedder)

    async def run():
        memory = open_memory(mem_cfg)
        try:
            added = memory.knowledge.ensure_starter()
            if added:
                console.print(f"knowledge base: {added} starter inspirations loaded")
            for path in cfg.papers or []:
                n = await read_paper(Path(path), clients["Reader"], memory, run_dir)
                console.print(f"Reader: {path}: {n} inspiration(s) added")
            return await run_design(settings, run_dir, root, clients, memory, train, console)
        except RunError as exc:
            raise RunSetupError(str(exc)) from exc
        finally:
            memory.close()
            for c in {id(c): c for c in clients.values()}.values():
                await c.close()

    return run
