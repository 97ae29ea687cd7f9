"""Dataset loaders on small files written here in the real pickle formats."""

from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from training import datasets as D
from training.datasets import (DatasetChecksumError, DatasetError, DatasetFormatError, DatasetNotFoundError,
                               UnknownDatasetError, load_dataset)


def _rows(n: int, hw: int, start: int) -> np.ndarray:
    """Rows whose first byte pairs identify the image (start + i), so splits can be traced back."""
    rows = np.zeros((n, 3 * hw * hw), dtype=np.uint8)
    ids = np.arange(start, start + n)
    rows[:, 0], rows[:, 1] = ids % 256, ids // 256
    rows[:, 2:] = (ids[:, None] * 7 + np.arange(3 * hw * hw - 2)) % 256
    return rows


def _ids(x: torch.Tensor) -> set[int]:
    flat = x.reshape(x.shape[0], -1).long()
    return set((flat[:, 0] + 256 * flat[:, 1]).tolist())


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30) -> Path:
    folder = root / "cifar-10-batches-py"
    for b in range(5):
        start = b * per_batch
        _dump(folder / f"data_batch_{b + 1}", {b"batch_label": b"x", b"data": _rows(per_batch, 32, start),
                                                b"labels": [(start + i) % 10 for i in range(per_batch)]})
    _dump(folder / "test_batch", {b"data": _rows(n_test, 32, 5000), b"labels": [i % 10 for i in range(n_test)]})
    return folder


def write_cifar100(root: Path, n_train: int = 60, n_test: int = 40) -> None:
    folder = root / "cifar-100-python"
    _dump(folder / "train", {b"data": _rows(n_train, 32, 0), b"fine_labels": [i % 100 for i in range(n_train)],
                             b"coarse_labels": [i % 20 for i in range(n_train)]})
    _dump(folder / "test", {b"data": _rows(n_test, 32, 5000), b"fine_labels": [i % 100 for i in range(n_test)],
                            b"coarse_labels": [i % 20 for i in range(n_test)]})


def write_imagenet16(root: Path, per_batch: int = 12, n_val: int = 30) -> None:
    folder = root / "ImageNet16"
    for b in range(10):
        start = b * per_batch
        # labels 1..1000 with a third above 120: those must be dropped
        labels = [1 + ((start + i) % 180) for i in range(per_batch)]
        _dump(folder / f"train_data_batch_{b + 1}", {"data": _rows(per_batch, 16, start), "labels": labels,
                                                     "mean": np.zeros(768)})
    _dump(folder / "val_data", {"data": _rows(n_val, 16, 5000), "labels": [1 + (i * 7) % 240 for i in range(n_val)]})


def test_cifar10_nb201_split(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path, seed=3, download=False)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (50, 50, 30)
    assert ds.train.x.dtype == torch.uint8 and ds.train.x.shape[1:] == (3, 32, 32)
    assert ds.train.y.dtype == torch.int64 and ds.num_classes == 10 and ds.channels == 3
    assert ds.image_size == (32, 32) and ds.split_seed == 3 and len(ds.mean) == 3
    # train and valid partition the 5 training batches; test is the test batch
    assert _ids(ds.train.x) | _ids(ds.valid.x) == set(range(100)) and not _ids(ds.train.x) & _ids(ds.valid.x)
    assert _ids(ds.test.x) == set(range(5000, 5030))
    # labels follow their images
    ids = (ds.train.x[:, 0, 0, 0].long() + 256 * ds.train.x[:, 0, 0, 1].long())
    assert torch.equal(ds.train.y, ids % 10)
    # a split is fixed by its seed
    again = load_dataset("cifar10", tmp_path, seed=3, download=False)
    other = load_dataset("cifar10", tmp_path, seed=4, download=False)
    assert torch.equal(again.train.x, ds.train.x) and not torch.equal(other.train.x, ds.train.x)


def test_cifar100_valid_test_halves(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    ds = load_dataset("cifar100", tmp_path, seed=1, download=False)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (60, 20, 20)
    assert ds.num_classes == 100
    assert _ids(ds.valid.x) | _ids(ds.test.x) == set(range(5000, 5040))
    assert not _ids(ds.valid.x) & _ids(ds.test.x)
    assert _ids(ds.train.x) == set(range(60))
    assert not torch.equal(load_dataset("cifar100", tmp_path, seed=2, download=False).valid.x, ds.valid.x)


def test_imagenet16_keeps_first_120_classes(tmp_path: Path) -> None:
    write_imagenet16(tmp_path)
    ds = load_dataset("imagenet16-120", tmp_path, seed=0, download=False)
    assert ds.num_classes == 120 and ds.train.x.shape[1:] == (3, 16, 16)
    n_train = sum(1 for i in range(120) if 1 + (i % 180) <= 120)
    n_val = sum(1 for i in range(30) if 1 + (i * 7) % 240 <= 120)
    assert len(ds.train) == n_train
    assert len(ds.valid) + len(ds.test) == n_val and len(ds.valid) == n_val // 2
    for s in (ds.train, ds.valid, ds.test):
        assert int(s.y.min()) >= 0 and int(s.y.max()) <= 119
    # label 1 becomes class 0: image id 0 had label 1
    ids = ds.train.x[:, 0, 0, 0].long() + 256 * ds.train.x[:, 0, 0, 1].long()
    assert torch.equal(ds.train.y, ids % 180)
    assert load_dataset("ImageNet16", tmp_path, seed=0, download=False).name == "imagenet16-120"


def test_digits_offline_split() -> None:
    ds = load_dataset("digits", seed=5)
    assert ds.channels == 3 and ds.image_size == (8, 8) and ds.num_classes == 10
    assert torch.equal(ds.train.x[:, 0], ds.train.x[:, 2]) and len(ds.mean) == 3
    assert len(ds.train) + len(ds.valid) + len(ds.test) == 1797
    assert len(ds.train) == round(0.6 * 1797)
    assert ds.train.x.dtype == torch.uint8 and int(ds.train.x.max()) == 255
    assert torch.equal(load_dataset("digits", seed=5).valid.x, ds.valid.x)
    assert not torch.equal(load_dataset("digits", seed=6).valid.x, ds.valid.x)
    sub = load_dataset("digits", seed=5, subset=100)
    assert len(sub.train) == len(sub.valid) == len(sub.test) == 100
    assert torch.equal(sub.train.x, ds.train.x[:100])


def test_missing_files_error_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("cifar10", tmp_path / "nowhere", download=False)
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    assert "cifar-10-python.tar.gz" in msg and "c58f30108f718f92721af3b95e74349a" in msg
    assert "dataset=digits" in msg
    assert isinstance(e.value, DatasetError)
    with pytest.raises(DatasetNotFoundError, match="dataset=digits"):
        load_dataset("imagenet16-120", tmp_path)


def test_failed_download_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = D._Archive((tmp_path / "absent.tar.gz").as_uri(), "0" * 32, "cifar-100-python")
    monkeypatch.setitem(D._ARCHIVES, "cifar100", bad)
    with pytest.raises(DatasetNotFoundError, match="Download failed.*dataset=digits"):
        load_dataset("cifar100", tmp_path / "data", download=True)


def _tarball(src_root: Path, out: Path) -> str:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src_root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return hashlib.md5(out.read_bytes()).hexdigest()


def test_download_verifies_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path / "src")
    tgz = tmp_path / "cifar-10-python.tar.gz"
    md5 = _tarball(tmp_path / "src", tgz)
    monkeypatch.setitem(D._ARCHIVES, "cifar10", D._Archive(tgz.as_uri(), "f" * 32, "cifar-10-batches-py"))
    with pytest.raises(DatasetChecksumError, match="md5"):
        load_dataset("cifar10", tmp_path / "bad", download=True)
    assert not (tmp_path / "bad" / "cifar-10-batches-py").exists()
    monkeypatch.setitem(D._ARCHIVES, "cifar10", D._Archive(tgz.as_uri(), md5, "cifar-10-batches-py"))
    ds = load_dataset("cifar10", tmp_path / "good", download=True)
    assert len(ds.train) == 50 and (tmp_path / "good" / "cifar-10-batches-py" / "test_batch").is_file()


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownDatasetError) as e:
        load_dataset("mnist")
    assert isinstance(e.value, DatasetError)
    for name in ("cifar10", "cifar100", "imagenet16-120", "digits"):
        assert name in str(e.value)


def test_malformed_file_is_a_format_error(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    _dump(folder / "data_batch_2", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DatasetFormatError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path, download=False)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError):
        load_dataset("cifar10", tmp_path, download=False)
