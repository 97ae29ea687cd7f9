"""System prompts live in prompts/ as plain text, one per role."""
from __future__ import annotations

from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


def load_prompt(role: str, directory: Path = PROMPTS_DIR) -> str:
    path = directory / f"{role.lower()}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no system prompt for role {role!r}: expected {path}")
    return path.read_text()
