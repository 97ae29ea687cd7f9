"""Dataset pickles are read with a restricted unpickler: the real CIFAR/ImageNet16 format loads, in
every pickle protocol and under numpy 1's module names; anything that would run code is refused."""

from __future__ import annotations

import builtins
import importlib
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_training_datasets import write_cifar10
from training.datasets import DatasetError, DatasetFormatError, UnsafePickleError, _unpickle, load_dataset


class _RunsCode:
    """Unpickling this calls `func(*args)`: what a crafted dataset file would do."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _batch(n: int = 6) -> dict:
    rows = (np.arange(n * 3072) % 251).astype(np.uint8).reshape(n, 3072)
    return {b"batch_label": b"training batch 1 of 5", b"data": rows, b"labels": [i % 10 for i in range(n)],
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def test_a_pickle_that_would_run_a_command_is_refused_and_runs_nothing(tmp_path: Path):
    marker = tmp_path / "marker"
    evil = tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _RunsCode(os.system, f"touch {marker}"), b"labels": []}))
    with pytest.raises(UnsafePickleError) as err:
        _unpickle(evil)
    message = str(err.value)
    assert str(evil) in message and f"'{os.system.__module__}.system'" in message
    assert "numpy arrays" in message  # says what the format may hold
    assert not marker.exists()


@pytest.mark.parametrize("func,args", [(builtins.eval, ("1+1",)), (builtins.exec, ("x = 1",)),
                                       (subprocess.call, (["true"],)), (importlib.import_module, ("os",))],
                         ids=["eval", "exec", "subprocess", "import"])
def test_other_code_running_globals_are_refused(tmp_path: Path, func, args):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(_RunsCode(func, *args)))
    with pytest.raises(UnsafePickleError, match=rf"refused to load the global '{func.__module__}\.{func.__name__}'"):
        _unpickle(path)


def test_a_crafted_batch_in_a_dataset_folder_stops_the_load_with_a_dataset_error(tmp_path: Path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "marker"
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _RunsCode(os.system, f"touch {marker}")}))
    with pytest.raises(DatasetError, match="test_batch: refused to load the global"):
        load_dataset("cifar10", root=tmp_path, download=False)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_real_format_loads_in_every_protocol(tmp_path: Path, protocol: int):
    batch = _batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    got = _unpickle(path)
    assert sorted(got) == ["batch_label", "data", "filenames", "labels"]  # bytes keys come back as str
    assert got["data"].dtype == np.uint8 and np.array_equal(got["data"], batch[b"data"])
    assert got["labels"] == batch[b"labels"] and got["filenames"] == batch[b"filenames"]


def test_numpy_1_module_names_and_numpy_scalars_load(tmp_path: Path):
    # The official CIFAR files were written by numpy 1, which named numpy.core.multiarray; labels
    # may also be numpy scalars. Protocol 2 spells globals out as text, so they can be renamed.
    batch = {b"data": _batch()[b"data"], b"labels": [np.int64(3), np.int64(7)] * 3}
    data = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old_batch"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    got = _unpickle(path)
    assert np.array_equal(got["data"], batch[b"data"]) and [int(v) for v in got["labels"]] == [3, 7] * 3


def test_garbage_and_truncated_files_are_format_errors(tmp_path: Path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(_batch())[:-40])
    with pytest.raises(DatasetFormatError, match=f"cannot read {path}"):
        _unpickle(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetFormatError, match=f"cannot read {path}"):
        _unpickle(path)
