"""Token counting with a real GPT tokenizer that works offline (bpe-openai ships the tables)."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4)
def encoding(name: str = "o200k_base"):
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_tokens(text: str, name: str = "o200k_base") -> int:
    return len(encoding(name).encode(text, disallowed_special=())) if text else 0
