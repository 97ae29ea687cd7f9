import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def corpus_kind(path: Path) -> str:
    name = path.stem
    return "stem" if name.startswith("stem") else "downsample" if "reduction" in name else "base"


@pytest.fixture(scope="session")
def corpus():
    """Every block of the test corpus as (name, kind, text)."""
    return [(p.stem, corpus_kind(p), p.read_text()) for p in sorted(CORPUS.glob("*.txt"))]


@pytest.fixture
def one_thread():
    """One intra-op thread for tests that train: on a small, shared CI box, OpenMP threads spinning
    against other processes slow these tiny models down by an order of magnitude."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
