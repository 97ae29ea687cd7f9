"""Proxy scores of a run's candidates (issue 12): the minibatch they are computed on, the scorer a
run passes into its trials, the choice among a trial's screened designs, and how well each proxy
ordered the run's trained nodes.

The scorer builds the candidate exactly as it would be trained (graphs.compile.build_model with the
run's macro, dataset and fitted width), with weights from the run's seed, and scores it on one
seeded minibatch of the run's training split. When the run's dataset files are not on disk (a run
with the table evaluator needs none) the data-dependent proxies use the digits images resized to
the dataset's input shape, and `ProxyScores.data` says so.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F

from .proxies import PROXIES, ProxyError, get_proxy, rank_correlations, score

__all__ = ["ProxyScores", "ProxyScorer", "minibatch", "best_by", "run_correlations", "correlation_lines"]


def minibatch(dataset: str, image_size: int, data_root: str | None, batch: int,
              seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """A seeded minibatch of `dataset`'s training split, normalised as the trainer normalises it:
    the real images when `data_root` (or the default data folder) has them, else the digits images
    replicated to 3 channels and resized to `image_size`. Returns (x, y, where the images came from)."""
    from .datasets import DatasetError, load_dataset

    ds, source = None, ""
    if dataset != "digits":
        try:
            ds = load_dataset(dataset, data_root, seed=seed, download=False)
            source = f"{dataset} training images" + (f" from {data_root}" if data_root else "")
        except DatasetError as exc:
            source = f"no {dataset} files ({type(exc).__name__}); "
    if ds is None:
        ds = load_dataset("digits", None, seed=seed)
        if dataset != "digits":
            source += (f"sklearn digits (8x8 gray, replicated to 3 channels) resized to {image_size}x{image_size}: "
                       f"not the {dataset} images")
        else:
            source = "digits training images"
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.train), generator=g)[:batch]
    x = ds.train.x[idx].float() / 255.0
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    x = (x - mean) / std
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.contiguous(), ds.train.y[idx].clone(), source


@dataclass(frozen=True)
class ProxyScores:
    """One candidate's scores (None where a proxy is undefined for it, e.g. a degenerate kernel), the
    seconds they took, and where the minibatch came from; `error` when the network could not be scored."""

    scores: dict[str, float | None]
    seconds: float
    data: str
    error: str | None = None

    def as_metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"proxies": dict(self.scores), "proxy_seconds": round(self.seconds, 3),
                               "proxy_data": self.data}
        if self.error:
            out["proxy_error"] = self.error
        return out


@dataclass
class ProxyScorer:
    """`scorer(block, x)`: the proxies `names` of the design as the run would train it. The minibatch
    is loaded on the first call and kept (one per run)."""

    names: tuple[str, ...]
    dataset: str
    macro: str
    data_root: str | None = None
    batch: int = 64
    seed: int = 0
    _batch: tuple[torch.Tensor, torch.Tensor, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.names = tuple(dict.fromkeys(self.names))
        for n in self.names:
            get_proxy(n)  # UnknownProxyError names the valid ones

    @property
    def needs_data(self) -> bool:
        return any(PROXIES[n].needs_data for n in self.names)

    def data(self) -> tuple[torch.Tensor, torch.Tensor, str]:
        if self._batch is None:
            from graphs.macro import dataset_shape

            shape = dataset_shape(self.dataset)
            if self.needs_data:
                self._batch = minibatch(self.dataset, shape.image_size, self.data_root, self.batch, self.seed)
            else:  # only the input's shape is read (synflow uses ones; params/flops nothing)
                x = torch.zeros(self.batch, 3, shape.image_size, shape.image_size)
                self._batch = (x, torch.zeros(self.batch, dtype=torch.long), "input shape only")
        return self._batch

    def __call__(self, block, x: int | None = None) -> ProxyScores:
        from graphs.compile import build_model
        from graphs.ir import parse_block

        start = time.perf_counter()
        block = parse_block(block) if isinstance(block, str) else block
        xs, ys, source = self.data()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)  # the candidate's weights as a run seeded so would start
                net = build_model(block, self.macro, self.dataset, x)
            raw = score(net, (xs, ys), self.names, seed=self.seed)
        except (ProxyError, ValueError, RuntimeError) as exc:  # an odd network is a recorded error, not a crash
            return ProxyScores({n: None for n in self.names}, time.perf_counter() - start, source,
                               error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        # JSON has no inf/NaN: None, which ranks last (a degenerate kernel's -inf is the lowest score too)
        scores = {n: (v if math.isfinite(v) else None) for n, v in raw.items()}
        return ProxyScores(scores, time.perf_counter() - start, source)


def best_by(candidates: Iterable[Mapping[str, float | None]], proxy: str) -> int:
    """Index of the candidate whose score of `proxy` is best (by the proxy's direction); a candidate
    without a score ranks last; ties go to the earlier candidate."""
    better = get_proxy(proxy).higher_is_better
    keyed = []
    for i, scores in enumerate(candidates):
        v = scores.get(proxy)
        keyed.append((0 if v is None else 1, (v if better else -v) if v is not None else 0.0, -i))
    if not keyed:
        raise ValueError("no candidates to choose from")
    return max(range(len(keyed)), key=lambda i: keyed[i])


def run_correlations(nodes: Iterable[Any], names: Iterable[str], bootstrap: int = 1000,
                     seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per proxy, Spearman rho and Kendall tau (with bootstrap CIs) between the proxy's scores and the
    validation accuracy of the trained nodes that have both (tree nodes: `.status`, `.valid_acc`,
    `.metrics["proxies"]`)."""
    trained = [n for n in nodes if n.status == "trained" and n.valid_acc is not None]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        pairs = [((n.metrics or {}).get("proxies", {}).get(name), n.valid_acc) for n in trained]
        pairs = [(s, a) for s, a in pairs if s is not None]
        c = rank_correlations([s for s, _ in pairs], [a for _, a in pairs], bootstrap=bootstrap if len(pairs) >= 3 else 0,
                              seed=seed)
        out[name] = {"n": c["n"], "spearman": _num(c["spearman"]), "kendall": _num(c["kendall"]),
                     "spearman_ci": [_num(v) for v in c["spearman_ci"]],
                     "kendall_ci": [_num(v) for v in c["kendall_ci"]]}
    return out


def correlation_lines(corr: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The summary's lines: one per proxy, or one saying why there is nothing to show."""
    if not corr:
        return []
    lines = []
    for name, c in corr.items():
        if c["spearman"] is None:
            why = "too few to rank" if c["n"] < 3 else "undefined: the scores or the accuracies are all equal"
            lines.append(f"  {name}: {c['n']} trained nodes with a score: {why}")
            continue
        lo, hi = c["spearman_ci"]
        ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        lines.append(f"  {name}: rho {c['spearman']:+.2f}{ci}, tau {c['kendall']:+.2f} over {c['n']} trained nodes")
    return ["proxy vs validation accuracy (Spearman rho [95% CI], Kendall tau):", *lines]


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)
