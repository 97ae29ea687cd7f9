"""System prompts: one Jinja2 template per role in prompts/, rendered with what the agents must
agree on from its one source: markers, plan fields and the fix-round limit from agents.protocol,
the ops from the op registry, the edit kinds from graphs.edits, the knowledge tags from
tools.memory. A variable a template names but the context lacks is an error (StrictUndefined)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, get_args

import jinja2

from . import protocol

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


def edit_kinds() -> list[str]:
    """The `kind` of every edit operation, in the union's order."""
    from graphs.edits import Edit

    union = get_args(Edit)[0]
    return [model.model_fields["kind"].default for model in get_args(union)]


def prompt_context(role: str, max_rounds: int = protocol.MAX_ROUNDS, ops: Sequence | None = None) -> dict[str, Any]:
    """Everything a role's template may name. ValueError for an unknown role or max_rounds < 1."""
    from graphs.registry import op_catalog
    from tools.memory.records import DESIGN_TAGS

    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"max_rounds must be a whole number >= 1, got {max_rounds!r}")
    return {
        "role": protocol.check_role(role),
        "intro": protocol.introduction(role),
        "max_rounds": max_rounds,
        **{m: m for m in protocol.MARKERS},
        **{f: f for f in protocol.PLAN_FIELDS},
        "ADVICE_LABEL": protocol.ADVICE_LABEL,
        "EXPERIENCE_LABEL": protocol.EXPERIENCE_LABEL,
        "EXCERPT_OPEN": protocol.EXCERPT_OPEN,
        "EXCERPT_CLOSE": protocol.EXCERPT_CLOSE,
        "ops": list(op_catalog() if ops is None else ops),
        "edit_kinds": edit_kinds(),
        "tags": sorted(DESIGN_TAGS),
    }


def load_prompt(role: str, *, max_rounds: int = protocol.MAX_ROUNDS, ops: Sequence | None = None,
                directory: Path = PROMPTS_DIR) -> str:
    """The system prompt of `role` (prompts/<role>.md rendered). `ops`: the ops to list, objects
    with name, signature and doc, and optionally `inputs` (default: graphs.registry.op_catalog())."""
    context = prompt_context(role, max_rounds, ops)
    path = Path(directory) / f"{role.lower()}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no system prompt for role {role!r}: expected {path}")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    try:
        return env.get_template(path.name).render(context)
    except jinja2.UndefinedError as exc:
        raise ValueError(f"prompt template {path} names a variable the context lacks: {exc}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"prompt template {path}, line {exc.lineno}: {exc.message}") from None
