"""Training-free proxies (DESIGN §9): scores of an untrained candidate from one minibatch, used to
screen designs before training and audited against the NB201 table by bench/proxy_correlation.py.

Every proxy is a small function `fn(net, x, y) -> float` over a network (a `graphs.compile.Compiled`
or any `nn.Module` taking (B,C,H,W) images) and one minibatch; `PROXIES` registers them with whether
they read the data and which direction is better. `score(model, batch, names, seed)` computes a set.

Definitions follow the published ones (and their reference code) so that their published
correlations on NAS-Bench-201 are the right yardstick:

- `synflow` (Tanaka et al. 2020; Abdelfattah et al. 2021): on a copy in float64 with every parameter
  replaced by its absolute value, R = sum of the network's output for an all-ones input of one image;
  the score is sum |theta * dR/dtheta| over the weights of the Conv2d and Linear layers. BatchNorm
  layers are *removed* (replaced by identity), as the zero-cost-proxies reference code does for
  synflow (`bn=False`): BN in eval mode with fresh statistics would be an identity up to its epsilon
  anyway, while in train mode it would renormalise the all-ones signal away.
- `jacob_cov` (NASWOT, Mellor et al. 2021): each ReLU (and GELU: same sign pattern) gives every image
  a binary code (unit active or not); K[i, j] = N_A - hamming(c_i, c_j) summed over all units, i.e.
  c_i.c_j + (1-c_i).(1-c_j); the score is log|det K|. Train mode (batch statistics), as the reference.
- `jacov`: the Jacobian-covariance score of NASWOT's first version, which is what the
  zero-cost-proxies paper tabulates as "jacob_cov": with J the per-image input gradients of the summed
  output, -sum(log(v + k) + 1/(v + k)) over the eigenvalues v of corrcoef(J), k = 1e-5.
- `grad_norm`: the cross-entropy loss of the minibatch in train mode; the sum over Conv2d/Linear
  layers of the L2 norm of the weight's gradient (the reference sums per-layer norms; it is not the
  global norm).
- `snip` (Lee et al. 2019): the same loss; sum over Conv2d/Linear weights of |theta * dL/dtheta|.
- `params`, `flops`: the analytic cost of `graphs.cost` (exact parameters; MACs) of a `Compiled`
  network; `params` of a bare module counts its parameters.

Nothing here changes the caller's model or the process's random state: each proxy works on a deep
copy, and `score` seeds torch inside `torch.random.fork_rng`, so a proxy is deterministic per seed
(only a random op such as DropPath draws from it).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Proxy", "PROXIES", "ProxyError", "UnknownProxyError", "ProxyUndefinedError", "proxy_names",
           "get_proxy", "score", "SHARED_PASSES", "rank_correlations", "spearman", "kendall", "synflow", "jacob_cov", "jacov", "grad_norm", "snip", "params", "flops"]

Net = Any  # an nn.Module, or a graphs.compile.Compiled (duck-typed: .module, .cost)
ProxyFn = Callable[[Net, torch.Tensor, torch.Tensor], float]


class ProxyError(ValueError):
    """A proxy that cannot be computed for this network or batch; the message says why."""


class UnknownProxyError(ProxyError, KeyError):
    """A proxy name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ProxyUndefinedError(ProxyError):
    """The proxy's definition does not apply to this network (e.g. jacob_cov without ReLU/GELU)."""


# ------------------------------------------------------------------------------------- helpers


def _module(net: Net) -> nn.Module:
    """The nn.Module of a Compiled network, or the module itself."""
    mod = getattr(net, "module", net)
    if not isinstance(mod, nn.Module):
        raise ProxyError(f"expected an nn.Module or a graphs.compile.Compiled network, got {type(net).__name__}")
    return mod


def _working_copy(net: Net, train: bool) -> nn.Module:
    """A deep copy in the requested mode: proxies mutate it (BN statistics, dtypes, parameters)."""
    mod = copy.deepcopy(_module(net))
    mod.train(train)
    for p in mod.parameters():
        p.grad = None
        p.requires_grad_(True)  # a caller's frozen layers are still scored
    return mod


def _device(mod: nn.Module) -> torch.device:
    p = next(mod.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _weighted_layers(mod: nn.Module) -> list[nn.Module]:
    """The layers the reference scores (its 'param' mode): Conv2d and Linear, in module order."""
    return [m for m in mod.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _remove_batchnorm(mod: nn.Module) -> None:
    """Replace every BatchNorm layer by identity in place (synflow's `bn=False` copy)."""
    for parent in list(mod.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())


def _check_batch(x: torch.Tensor, y: torch.Tensor | None, need_labels: bool) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise ProxyError(f"the batch's inputs must be a tensor (B, ...) with B >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if need_labels and (not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]):
        raise ProxyError(f"this proxy needs integer labels (B,) for the inputs {tuple(x.shape)}, got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else y!r}")


def _loss_gradients(net: Net, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, dL/dweight) of each Conv2d/Linear layer for the cross-entropy loss of the batch in
    train mode, on a copy (torch.autograd.grad: no .grad is left anywhere)."""
    _check_batch(x, y, need_labels=True)
    mod = _working_copy(net, train=True)
    dev = _device(mod)
    weights = [m.weight for m in _weighted_layers(mod)]
    if not weights:
        raise ProxyUndefinedError("the network has no Conv2d or Linear layer to score")
    with torch.enable_grad():
        loss = F.cross_entropy(mod(x.to(dev)), y.to(dev))
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w.detach(), torch.zeros_like(w) if g is None else g.detach()) for w, g in zip(weights, grads)]


# ------------------------------------------------------------------------------------- proxies
# Each data proxy is split into a *pass* (the forward/backward work on a copy) and a pure reduction of
# its result, so that `score` can run one pass for the proxies that share it (grad_norm and snip;
# jacob_cov and jacov) while each public function still computes its proxy on its own.


def synflow(net: Net, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """sum |theta * dR/dtheta| over Conv2d/Linear weights, R = sum(f_|theta|(1)) in float64, BN removed."""
    del y  # data-free: only the input shape is read
    _check_batch(x, None, need_labels=False)
    mod = _working_copy(net, train=False)
    _remove_batchnorm(mod)
    mod.double()
    with torch.no_grad():
        for p in mod.parameters():
            p.abs_()
    weights = [m.weight for m in _weighted_layers(mod)]
    if not weights:
        raise ProxyUndefinedError("the network has no Conv2d or Linear layer to score")
    ones = torch.ones((1,) + tuple(x.shape[1:]), dtype=torch.float64, device=_device(mod))
    with torch.enable_grad():
        r = mod(ones).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
    with torch.no_grad():
        return float(sum(float((w * g).abs().sum()) for w, g in zip(weights, grads) if g is not None))


def _train_forward(net: Net, x: torch.Tensor, y: torch.Tensor | None = None, *, codes: bool = True,
                   jacobian: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One train-mode forward of the batch on a copy: NASWOT's code kernel K (float64, None without
    ReLU/GELU) and, if asked, the input gradient of the summed output per image (B, C*H*W); None when
    the output does not depend on the input."""
    del y
    _check_batch(x, None, need_labels=False)
    if x.shape[0] < 2:
        raise ProxyError("jacob_cov and jacov compare images: the minibatch needs at least 2")
    mod = _working_copy(net, train=True)
    kernel: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        # Each call's codes enter K at once (a network's codes together would take hundreds of MB).
        # GELU(x) > 0 exactly when x > 0: it has ReLU's codes.
        c = (out.detach().reshape(out.shape[0], -1) > 0).to(torch.float32)
        if not kernel:
            kernel.append(torch.zeros((c.shape[0], c.shape[0]), dtype=torch.float64))
        kernel[0] += _code_kernel(c)

    handles = ([m.register_forward_hook(hook) for m in mod.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
               if codes else [])
    inp = x.detach().to(_device(mod)).clone().requires_grad_(jacobian)
    try:
        with torch.set_grad_enabled(jacobian):
            out = mod(inp)
            jac = None
            if jacobian and out.requires_grad:
                (jac,) = torch.autograd.grad(out, inp, grad_outputs=torch.ones_like(out), allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return (kernel[0] if kernel else None), (None if jac is None else jac.detach().reshape(jac.shape[0], -1))


def _code_kernel(c: torch.Tensor) -> torch.Tensor:
    """c_i.c_j + (1-c_i).(1-c_j) for 0/1 codes c (B, n), with one product: (1-c)(1-c)^T expands to
    n - s_i - s_j + c_i.c_j (s: active units per image). float32 products of 0/1 are exact below 2^24
    units; the sum is formed in float64."""
    g = (c @ c.T).double().cpu()
    s = c.sum(dim=1).double().cpu()
    return 2 * g - s[:, None] - s[None, :] + c.shape[1]


def _naswot_logdet(kernel: torch.Tensor | None) -> float:
    if kernel is None:
        raise ProxyUndefinedError("jacob_cov needs ReLU or GELU activations; the network has none")
    return float(torch.linalg.slogdet(kernel).logabsdet)  # -inf when two images share every code


def _jacov_score(jac: torch.Tensor | None) -> float:
    if jac is None:
        return float("-inf")  # the output ignores the input: the lowest score
    j = jac.double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(j)
    if not np.all(np.isfinite(corr)):
        return float("-inf")  # an image's input gradient is constant (e.g. zero): correlation undefined
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


def jacob_cov(net: Net, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """NASWOT: log|det K|, K = sum over ReLU/GELU units of c_i.c_j + (1-c_i).(1-c_j) (= N_A - hamming)."""
    kernel, _ = _train_forward(net, x, y, jacobian=False)
    return _naswot_logdet(kernel)


def jacov(net: Net, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """NASWOT v1 Jacobian covariance: -sum(log(v+k) + 1/(v+k)), v = eig(corrcoef(d sum f / dx per image))."""
    _, jac = _train_forward(net, x, y, codes=False)
    return _jacov_score(jac)


def _grad_norm_of(grads: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(float(g.norm()) for _, g in grads))


def _snip_of(grads: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return float(sum(float((w * g).abs().sum()) for w, g in grads))


def grad_norm(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear layers of ||dL/dW||_2 for the batch's cross-entropy loss (train mode)."""
    return _grad_norm_of(_loss_gradients(net, x, y))


def snip(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum over Conv2d/Linear weights of |W * dL/dW| for the batch's cross-entropy loss (train mode)."""
    return _snip_of(_loss_gradients(net, x, y))


def params(net: Net, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> float:
    """Exact parameter count (graphs.cost of a Compiled network; counted for a bare module)."""
    del x, y
    if getattr(net, "cost", None) is not None:
        return float(net.cost.params)
    return float(sum(p.numel() for p in _module(net).parameters()))


def flops(net: Net, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> float:
    """FLOPs as multiply-accumulates (graphs.cost, thop's rules) of a Compiled network."""
    del x, y
    cost = getattr(net, "cost", None)
    if cost is None:
        raise ProxyError(f"flops is the analytic cost of graphs.cost: pass the Compiled network "
                         f"(graphs.compile.build_model), not a bare {type(net).__name__}")
    return float(cost.flops)


# ------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Proxy:
    """A registered proxy. `shared` names a pass (SHARED_PASSES) whose result `reduce` turns into the
    score: `score` runs it once for all the requested proxies that name it."""

    name: str
    fn: ProxyFn
    needs_data: bool  # reads the minibatch's values (not only its shape)
    needs_labels: bool
    higher_is_better: bool = True
    doc: str = ""
    shared: str | None = None
    reduce: Callable[[Any, torch.Tensor], float] | None = None  # (pass result, x) -> score


SHARED_PASSES: dict[str, Callable[[Net, torch.Tensor, Any], Any]] = {
    "loss_gradients": _loss_gradients,
    "train_forward": _train_forward,
}

PROXIES: dict[str, Proxy] = {p.name: p for p in (
    Proxy("synflow", synflow, needs_data=False, needs_labels=False,
          doc="synaptic flow in float64: |parameters|, all-ones input, BN removed"),
    Proxy("jacob_cov", jacob_cov, needs_data=True, needs_labels=False,
          doc="NASWOT log-determinant of the binary ReLU-code kernel",
          shared="train_forward", reduce=lambda r, x: _naswot_logdet(r[0])),
    Proxy("jacov", jacov, needs_data=True, needs_labels=False,
          doc="NASWOT v1 input-Jacobian correlation (what the zero-cost-proxies paper calls jacob_cov)",
          shared="train_forward", reduce=lambda r, x: _jacov_score(r[1])),
    Proxy("grad_norm", grad_norm, needs_data=True, needs_labels=True,
          doc="sum of per-layer gradient norms of the minibatch loss",
          shared="loss_gradients", reduce=lambda r, x: _grad_norm_of(r)),
    Proxy("snip", snip, needs_data=True, needs_labels=True, doc="sum |theta * dL/dtheta| of the minibatch loss",
          shared="loss_gradients", reduce=lambda r, x: _snip_of(r)),
    Proxy("params", params, needs_data=False, needs_labels=False, doc="parameter count (graphs.cost)"),
    Proxy("flops", flops, needs_data=False, needs_labels=False, doc="multiply-accumulates (graphs.cost)"),
)}


def proxy_names() -> tuple[str, ...]:
    return tuple(PROXIES)


def get_proxy(name: str) -> Proxy:
    try:
        return PROXIES[name]
    except (KeyError, TypeError):
        raise UnknownProxyError(f"unknown proxy {name!r}; valid proxies: {', '.join(PROXIES)}") from None


def _groups(chosen: list[Proxy]) -> list[list[Proxy]]:
    """The proxies in the order asked, those sharing a pass gathered at the first one's place."""
    groups: list[list[Proxy]] = []
    at: dict[str, list[Proxy]] = {}
    for p in chosen:
        if p.shared is not None and p.shared in at:
            at[p.shared].append(p)
            continue
        groups.append([p])
        if p.shared is not None:
            at[p.shared] = groups[-1]
    return groups


def score(model: Net, batch: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
          names: Iterable[str] | str | None = None, seed: int = 0,
          timings: dict[str, float] | None = None) -> dict[str, float]:
    """The named proxies (all when None) of `model` on `batch` ((x, y), or x alone when no proxy
    needs labels), with torch seeded to `seed` inside a forked RNG for each pass. Names are checked
    before any work (UnknownProxyError lists the valid ones). Proxies that share a pass run it once;
    a given `timings` dict receives the seconds of each group, keyed by its names joined with '+'."""
    names = [names] if isinstance(names, str) else (list(PROXIES) if names is None else list(names))
    chosen = [get_proxy(n) for n in dict.fromkeys(names)]
    x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
    on_cuda = _device(_module(model)).type == "cuda"
    out: dict[str, float] = {}
    for group in _groups(chosen):
        start = time.perf_counter()
        # manual_seed seeds every CUDA device too: fork them all when the model is on one
        with torch.random.fork_rng(devices=None if on_cuda else []):
            torch.manual_seed(int(seed))
            if len(group) == 1:
                out[group[0].name] = float(group[0].fn(model, x, y))
            else:
                shared = SHARED_PASSES[group[0].shared](model, x, y)
                for p in group:
                    out[p.name] = float(p.reduce(shared, x))
        if timings is not None:
            timings["+".join(p.name for p in group)] = time.perf_counter() - start
    return {n: out[n] for n in dict.fromkeys(names)}


# ------------------------------------------------------------------------------------- rank statistics
# How well a proxy orders designs by accuracy: used by bench/proxy_correlation.py, and meant for a run's
# summary. scipy.stats when it is installed (it is not a dependency), else the numpy versions below.


def ranks(v: np.ndarray) -> np.ndarray:
    """Average ranks from 1 (ties share the mean of their positions), as scipy.stats.rankdata."""
    values, inverse, counts = np.unique(np.asarray(v, dtype=np.float64), return_inverse=True, return_counts=True)
    before = np.cumsum(counts) - counts
    return (before + (counts + 1) / 2.0)[inverse.reshape(-1)]


def spearman_np(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_np(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-b: concordant minus discordant pairs over the geometric mean of the untied counts
    (every pair is counted twice in numerator and denominator alike)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    sa, sb = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    den = np.sqrt((sa * sa).sum() * (sb * sb).sum())
    return float((sa * sb).sum() / den) if den else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return spearman_np(a, b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    try:
        from scipy.stats import kendalltau
    except ImportError:
        return kendall_np(a, b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)  # tau-b, scipy's default


def orderable(scores: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores for rank statistics and the mask of those kept: -inf (a degenerate kernel, no signal)
    stays below every finite score and +inf above; NaN is undefined and left out."""
    v = np.asarray(list(scores), dtype=np.float64)
    keep = ~np.isnan(v)
    finite = v[np.isfinite(v)]
    low = finite.min() - 1.0 - abs(finite.min()) if finite.size else -1.0
    high = finite.max() + 1.0 + abs(finite.max()) if finite.size else 1.0
    return np.where(np.isneginf(v), low, np.where(np.isposinf(v), high, v)), keep


def bootstrap_ci(a: np.ndarray, b: np.ndarray, stat: Callable[[np.ndarray, np.ndarray], float],
                 rng: np.random.Generator, reps: int = 1000) -> tuple[float, float]:
    """Percentile 95% interval of stat(a, b) over resampled pairs; resamples where it is undefined
    (all tied) are skipped."""
    n, vals = len(a), []
    for _ in range(reps):
        idx = rng.integers(0, n, n)
        v = stat(a[idx], b[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def rank_correlations(scores: Iterable[float], accuracy: Iterable[float], bootstrap: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """Spearman rho and Kendall tau between a proxy's scores and accuracies (pairs whose score is NaN
    left out, +-inf kept as extremes), each with a seeded bootstrap 95% CI (none when bootstrap=0)."""
    s, keep = orderable(scores)
    acc = np.asarray(list(accuracy), dtype=np.float64)
    if acc.shape != s.shape:
        raise ValueError(f"{s.size} scores but {acc.size} accuracies")
    s, acc = s[keep], acc[keep]
    out: dict[str, Any] = {"n": int(s.size), "spearman": float("nan"), "kendall": float("nan"),
                           "spearman_ci": (float("nan"), float("nan")), "kendall_ci": (float("nan"), float("nan"))}
    if s.size < 2:
        return out
    out["spearman"], out["kendall"] = spearman(s, acc), kendall(s, acc)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        out["spearman_ci"] = bootstrap_ci(s, acc, spearman, rng, bootstrap)
        out["kendall_ci"] = bootstrap_ci(s, acc, kendall, rng, bootstrap)
    return out
