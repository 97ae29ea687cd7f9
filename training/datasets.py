"""In-memory image datasets with the NAS-Bench-201 splits.

Every loader returns an `ImageDataset`: uint8 images (N, C, H, W) and int64 labels for the train,
valid and test splits, plus the normalisation constants. The whole set is small enough to live in
memory (and on the GPU), which is what lets the trainer skip DataLoader workers.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

__all__ = [
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetChecksumError",
    "DatasetFormatError",
    "UnsafePickleError",
    "UnknownDatasetError",
    "Split",
    "ImageDataset",
    "DATASETS",
    "available_datasets",
    "load_dataset",
    "default_root",
]


class DatasetError(Exception):
    """Base class of every dataset failure."""


class DatasetNotFoundError(DatasetError):
    """The files are missing and could not be fetched."""


class DatasetChecksumError(DatasetError):
    """A downloaded archive does not match its published md5."""


class DatasetFormatError(DatasetError):
    """A file exists but does not hold what the format promises."""


class UnsafePickleError(DatasetFormatError):
    """A dataset pickle names something the CIFAR/ImageNet16 format never holds (a function that
    could run code): it is refused before anything in it is called."""


class UnknownDatasetError(DatasetError, KeyError):
    """No loader is registered under that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W)
    y: torch.Tensor  # int64 (N,)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise DatasetFormatError(f"images must be uint8 (N,C,H,W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != (self.x.shape[0],):
            raise DatasetFormatError(f"labels must be int64 ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, n: int | None) -> "Split":
        return self if n is None or n >= len(self) else Split(self.x[:n], self.y[:n])


@dataclass(frozen=True)
class ImageDataset:
    name: str
    train: Split
    valid: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]
    split_seed: int
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.train.x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.x.shape[2]), int(self.train.x.shape[3])

    def subset(self, n: int | None) -> "ImageDataset":
        """The first `n` examples of each split (splits are already shuffled by their seed)."""
        if n is None:
            return self
        return ImageDataset(self.name, self.train.take(n), self.valid.take(n), self.test.take(n),
                            self.num_classes, self.mean, self.std, self.split_seed, dict(self.notes))


# --- helpers ---------------------------------------------------------------------------------


def default_root() -> Path:
    return Path(os.environ.get("NADER_DATA", "~/.cache/nader/data")).expanduser()


def _perm(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=g)


def _halves(split: Split, seed: int) -> tuple[Split, Split]:
    """Seeded halves of one official set (NB201's valid/test halves of the test set)."""
    p = _perm(len(split), seed)
    a, b = p[: len(p) // 2], p[len(p) // 2:]
    return Split(split.x[a], split.y[a]), Split(split.x[b], split.y[b])


def _shuffled(split: Split, seed: int) -> Split:
    p = _perm(len(split), seed)
    return Split(split.x[p], split.y[p])


def _numpy_part(module: str, name: str):
    """numpy's pickle helpers live in numpy._core since numpy 2 and in numpy.core before: files
    written by either name them by the module of their day."""
    for where in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{where}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"numpy has no {module}.{name}")  # pragma: no cover - every numpy has one


def _latin1_encode(text: str, encoding: str = "latin1"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only latin1 is in the format)")
    return codecs.encode(text, "latin1")


# Everything the CIFAR-10/100 and ImageNet16 python pickles refer to by name: numpy arrays, their
# dtypes and scalars. Dicts, lists, strings, bytes and numbers need no name. Nothing here runs code.
_PICKLE_GLOBALS: dict[tuple[str, str], Callable[[], object]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    **{(f"{where}.multiarray", name): (lambda name=name: _numpy_part("multiarray", name))
       for where in ("numpy._core", "numpy.core") for name in ("_reconstruct", "scalar")},
    **{(f"{where}.numeric", "_frombuffer"): (lambda: _numpy_part("numeric", "_frombuffer"))
       for where in ("numpy._core", "numpy.core")},
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _DatasetUnpickler(pickle.Unpickler):
    """Admits only the globals of the dataset format; anything else (os.system, eval, a class
    whose construction runs code) is refused before it is looked up, let alone called."""

    def find_class(self, module: str, name: str):
        make = _PICKLE_GLOBALS.get((module, name))
        if make is None:
            raise _Refused(f"{module}.{name}")
        return make()


class _Refused(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _unpickle(path: Path) -> dict:
    """A batch file of the CIFAR/ImageNet16 python format, read with a restricted unpickler."""
    try:
        with open(path, "rb") as f:
            obj = _DatasetUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise UnsafePickleError(
            f"{path}: refused to load the global {e.name!r}: a CIFAR/ImageNet16 batch holds only dicts, lists, "
            f"strings, numbers and numpy arrays, so this file is not one (or has been tampered with); "
            f"replace it with the official file") from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError) as e:  # what a truncated or garbled pickle raises
        raise DatasetFormatError(f"cannot read {path}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # CIFAR pickles have bytes keys, the ImageNet16 ones str keys: accept both.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _rows_to_split(path: Path, d: dict, label_key: str, hw: int) -> Split:
    if "data" not in d or label_key not in d:
        raise DatasetFormatError(f"{path}: missing key 'data' or '{label_key}' (has {sorted(d)})")
    data = np.asarray(d["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * hw * hw:
        raise DatasetFormatError(f"{path}: 'data' must be (N, {3 * hw * hw}) uint8, got {data.shape}")
    labels = np.asarray(d[label_key], dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0]:
        raise DatasetFormatError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(data.reshape(-1, 3, hw, hw).copy())  # rows are channel-major (R, G, B planes)
    return Split(x, torch.from_numpy(labels.copy()))


def _cat(splits: list[Split]) -> Split:
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


# --- download --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Archive:
    url: str
    md5: str
    folder: str  # what the archive extracts to


_ARCHIVES = {
    "cifar10": _Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                        "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
    "cifar100": _Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                         "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
}


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(archive: _Archive, root: Path, timeout: float = 30.0) -> None:
    """Fetch, verify and extract; raises OSError/URLError on network trouble."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        target = Path(tmp) / Path(archive.url).name
        with urllib.request.urlopen(archive.url, timeout=timeout) as r, open(target, "wb") as f:
            shutil.copyfileobj(r, f)
        got = _md5(target)
        if got != archive.md5:
            raise DatasetChecksumError(f"{archive.url}: md5 {got} != expected {archive.md5}; file discarded")
        with tarfile.open(target, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        extracted = Path(tmp) / archive.folder
        if not extracted.is_dir():
            raise DatasetFormatError(f"{archive.url} did not contain {archive.folder}/")
        shutil.move(str(extracted), str(root / archive.folder))


def _missing(name: str, where: Path, files: list[str], hint: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"dataset '{name}': files not found under {where} (missing: {', '.join(files[:4])}"
        f"{', ...' if len(files) > 4 else ''}). {hint} "
        f"Set dataset.root to the folder that holds them. To run offline without any download, "
        f"use dataset=digits (scikit-learn's bundled digits)."
    )


def _ensure_cifar(name: str, root: Path, files: list[str], download: bool) -> Path:
    archive = _ARCHIVES[name]
    folder = root / archive.folder
    missing = [f for f in files if not (folder / f).is_file()]
    if not missing:
        return folder
    how = f"Get {archive.url} (md5 {archive.md5}) and extract it into {root}."
    if download:
        try:
            _download(archive, root)
        except (urllib.error.URLError, OSError, tarfile.TarError) as e:
            raise _missing(name, folder, missing, f"Download failed ({e}). {how}") from e
        missing = [f for f in files if not (folder / f).is_file()]
        if not missing:
            return folder
    raise _missing(name, folder, missing, how)


# --- loaders ---------------------------------------------------------------------------------

# NB201's normalisation constants (0..255 units), so real runs normalise exactly as the benchmark.
_CIFAR10_MEAN, _CIFAR10_STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
_CIFAR100_MEAN, _CIFAR100_STD = (129.3, 124.1, 112.4), (68.2, 65.4, 70.4)
_IN16_MEAN, _IN16_STD = (122.68, 116.66, 104.01), (63.22, 61.26, 65.09)


def _unit(v: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(c / 255.0, 6) for c in v)


def load_cifar10(root: Path, seed: int, download: bool = True) -> ImageDataset:
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    folder = _ensure_cifar("cifar10", root, train_files + ["test_batch"], download)
    full = _cat([_rows_to_split(folder / f, _unpickle(folder / f), "labels", 32) for f in train_files])
    test = _rows_to_split(folder / "test_batch", _unpickle(folder / "test_batch"), "labels", 32)
    train, valid = _halves(full, seed)  # NB201 cifar10-valid: 25k/25k of the training set
    return ImageDataset("cifar10", train, valid, test, 10, _unit(_CIFAR10_MEAN), _unit(_CIFAR10_STD), seed)


def load_cifar100(root: Path, seed: int, download: bool = True) -> ImageDataset:
    folder = _ensure_cifar("cifar100", root, ["train", "test"], download)
    train = _shuffled(_rows_to_split(folder / "train", _unpickle(folder / "train"), "fine_labels", 32), seed)
    valid, test = _halves(_rows_to_split(folder / "test", _unpickle(folder / "test"), "fine_labels", 32), seed)
    return ImageDataset("cifar100", train, valid, test, 100, _unit(_CIFAR100_MEAN), _unit(_CIFAR100_STD), seed)


IMAGENET16_CLASSES = 120


def _keep_first_classes(split: Split, k: int) -> Split:
    """ImageNet16 labels are 1..1000; keep 1..k as 0..k-1 (NB201's ImageNet16-120)."""
    keep = (split.y >= 1) & (split.y <= k)
    return Split(split.x[keep].contiguous(), split.y[keep] - 1)


def load_imagenet16_120(root: Path, seed: int, download: bool = True) -> ImageDataset:
    del download  # no public mirror to fetch from: the files must be provided
    folder = root / "ImageNet16"
    if not folder.is_dir() and (root / "train_data_batch_1").is_file():
        folder = root
    train_files = [f"train_data_batch_{i}" for i in range(1, 11)]
    missing = [f for f in train_files + ["val_data"] if not (folder / f).is_file()]
    if missing:
        raise _missing("imagenet16-120", folder, missing,
                       "Get the downsampled ImageNet 16x16 pickles (Imagenet16_train.tar.gz, Imagenet16_val.tar.gz "
                       "from image-net.org, as NAS-Bench-201 uses) and place them in "
                       f"{root / 'ImageNet16'}.")
    parts = [_keep_first_classes(_rows_to_split(folder / f, _unpickle(folder / f), "labels", 16), IMAGENET16_CLASSES)
             for f in train_files]
    train = _shuffled(_cat(parts), seed)
    val = _keep_first_classes(_rows_to_split(folder / "val_data", _unpickle(folder / "val_data"), "labels", 16),
                              IMAGENET16_CLASSES)
    valid, test = _halves(val, seed)
    return ImageDataset("imagenet16-120", train, valid, test, IMAGENET16_CLASSES,
                        _unit(_IN16_MEAN), _unit(_IN16_STD), seed)


def load_digits(root: Path | None, seed: int, download: bool = True) -> ImageDataset:
    del root, download  # bundled with scikit-learn
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    gray = torch.from_numpy(np.round(d.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)  # (N,1,8,8)
    # Replicated to 3 channels: DESIGN 3.3's stem contract takes (B,3,H,W) on every dataset.
    x = gray.expand(-1, 3, -1, -1).contiguous()
    full = _shuffled(Split(x, torch.from_numpy(d.target.astype(np.int64))), seed)
    n = len(full)
    a, b = int(round(0.6 * n)), int(round(0.8 * n))
    train, valid, test = (Split(full.x[s], full.y[s]) for s in (slice(0, a), slice(a, b), slice(b, n)))
    xf = train.x[:, 0].float() / 255.0
    mean, std = round(xf.mean().item(), 6), round(xf.std().item(), 6)
    return ImageDataset("digits", train, valid, test, 10, (mean,) * 3, (std,) * 3, seed,
                        {"split": "60/20/20", "channels": "gray replicated to 3"})


def input_normalization(name: str, seed: int = 0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel in [0, 1] units that training on `name` normalises with: the NB201
    constants for CIFAR and ImageNet16-120 (no files needed), the training split's for digits."""
    fixed = {"cifar10": (_CIFAR10_MEAN, _CIFAR10_STD), "cifar100": (_CIFAR100_MEAN, _CIFAR100_STD),
             "imagenet16-120": (_IN16_MEAN, _IN16_STD)}
    if name in fixed:
        return _unit(fixed[name][0]), _unit(fixed[name][1])
    d = load_digits(None, seed)
    return d.mean, d.std


Loader = Callable[[Path, int, bool], ImageDataset]

DATASETS: dict[str, Loader] = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "imagenet16-120": load_imagenet16_120,
    "digits": load_digits,
}


def available_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(name: str, root: str | os.PathLike | None = None, seed: int = 0,
                 subset: int | None = None, download: bool = True) -> ImageDataset:
    """Load `name` with its NB201 splits fixed by `seed`; `subset` keeps the first n of each split."""
    key = name.lower().replace("_", "-")
    key = {"imagenet16": "imagenet16-120", "imagenet16120": "imagenet16-120"}.get(key, key)
    if key not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset '{name}'; valid names: {', '.join(available_datasets())}")
    ds = DATASETS[key](Path(root).expanduser() if root is not None else default_root(), int(seed), download)
    return ds.subset(subset)
