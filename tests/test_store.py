"""Run store and engine: atomic files, checksums, resume after a crash, extension, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from miaudit.audit.engine import train_and_query
from miaudit.audit.executors import LocalExecutor
from miaudit.audit.store import CorruptFileError, RunStore, config_hash, dataset_fingerprint
from miaudit.data import Dataset, keep_matrix
from miaudit.exceptions import UnknownNameError, ValidationError
from miaudit.train import make_recipe

#: A memory budget of one byte puts every model in a chunk of its own.
ONE_MODEL_PER_CHUNK = 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    d = load_digits()
    n = 400
    return Dataset(
        X=(d.data[:n] / 16.0).astype(np.float32),
        y=d.target[:n],
        record_ids=np.array([f"digit-{i}" for i in range(n)]),
        n_classes=10,
        name="digits",
    )


@pytest.fixture
def recipe():
    return make_recipe("torch-mlp", hidden_sizes=(16,), epochs=2, batch_size=32)


class FailingExecutor(LocalExecutor):
    """Runs chunks in process and raises when it reaches chunk number ``fail_at`` (0-based)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.started: list[tuple[int, ...]] = []

    def map(self, fn, tasks):
        for i, task in enumerate(tasks):
            if i == self.fail_at:
                raise RuntimeError("injected failure")
            self.started.append(task.model_ids)
            yield fn(task)


def _file_bytes(run_dir, model_id):
    return (run_dir / "observations" / f"model_{model_id:05d}.npy").read_bytes()


def test_interrupted_run_resumes_only_missing_models(tmp_path, data, recipe):
    failing = FailingExecutor(fail_at=2)
    with pytest.raises(RuntimeError, match="injected"):
        train_and_query(
            data,
            6,
            recipe,
            store_root=tmp_path,
            executor=failing,
            memory_budget=ONE_MODEL_PER_CHUNK,
            quiet=True,
        )
    assert failing.started == [(0,), (1,)]
    run_dir = next(tmp_path.iterdir())
    before = {i: _file_bytes(run_dir, i) for i in (0, 1)}
    mtimes = {
        i: (run_dir / "observations" / f"model_{i:05d}.npy").stat().st_mtime_ns for i in (0, 1)
    }
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(manifest["models"]) == ["0", "1"]

    counting = FailingExecutor(fail_at=-1)
    result = train_and_query(
        data,
        6,
        recipe,
        store_root=tmp_path,
        executor=counting,
        memory_budget=ONE_MODEL_PER_CHUNK,
        quiet=True,
    )
    assert result.trained == (2, 3, 4, 5)
    assert counting.started == [(2,), (3,), (4,), (5,)]
    for i in (0, 1):
        assert _file_bytes(run_dir, i) == before[i]
        path = run_dir / "observations" / f"model_{i:05d}.npy"
        assert path.stat().st_mtime_ns == mtimes[i]
    obs = result.observations()
    assert obs.shape == (6, len(data), 1, 10) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0], np.load(run_dir / "observations/model_00000.npy"))
    # a third call finds everything in place
    again = train_and_query(data, 6, recipe, store_root=tmp_path, quiet=True)
    assert again.trained == ()


def test_truncated_observation_file_is_detected_and_redone(tmp_path, data, recipe, caplog):
    first = train_and_query(
        data, 3, recipe, store_root=tmp_path, memory_budget=ONE_MODEL_PER_CHUNK, quiet=True
    )
    path = first.run_dir / "observations" / "model_00001.npy"
    original = path.read_bytes()
    path.write_bytes(original[: len(original) // 2])
    with pytest.raises(CorruptFileError, match="truncated"):
        first.observations([1])
    with caplog.at_level(logging.WARNING, logger="miaudit.store"):
        second = train_and_query(
            data, 3, recipe, store_root=tmp_path, memory_budget=ONE_MODEL_PER_CHUNK, quiet=True
        )
    assert second.trained == (1,)
    assert "model 1 will be trained again" in caplog.text
    assert path.read_bytes() == original  # same chunk, same seed: the same model again


def test_corrupted_bytes_of_same_size_fail_the_checksum(tmp_path, data, recipe):
    first = train_and_query(data, 2, recipe, store_root=tmp_path, quiet=True)
    path = first.run_dir / "models" / "model_00000.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="SHA-256"):
        first.weights(0)
    assert train_and_query(data, 2, recipe, store_root=tmp_path, quiet=True).trained == (0,)


def test_extension_trains_only_new_models_and_keeps_balance(tmp_path, data, recipe):
    first = train_and_query(data, 4, recipe, store_root=tmp_path, split_seed=5, quiet=True)
    more = train_and_query(data, 6, recipe, store_root=tmp_path, split_seed=5, quiet=True)
    assert more.trained == (4, 5)
    np.testing.assert_array_equal(more.keep[:4], first.keep)
    assert np.all(more.keep.sum(axis=0) == 3)
    fewer = train_and_query(data, 5, recipe, store_root=tmp_path, split_seed=5, quiet=True)
    assert fewer.trained == () and fewer.keep.shape == (5, len(data))
    info = more.model_info[5]
    assert info["n_train"] == int(more.keep[5].sum())
    assert 0.0 <= info["test_acc"] <= 1.0 and info["train_seconds"] > 0


def test_different_config_uses_another_folder(tmp_path, data, recipe):
    a = train_and_query(data, 2, recipe, store_root=tmp_path, quiet=True)
    other = make_recipe("torch-mlp", hidden_sizes=(16,), epochs=3, batch_size=32)
    b = train_and_query(data, 2, other, store_root=tmp_path, quiet=True)
    c = train_and_query(
        data, 2, recipe, queries=["identity", "identity"], store_root=tmp_path, quiet=True
    )
    assert len({a.run_dir, b.run_dir, c.run_dir}) == 3
    assert b.trained == (0, 1) and c.trained == (0, 1)
    assert b.run_dir.name.startswith("torch-mlp-")


def test_explicit_keep_must_match_finished_models(tmp_path, data, recipe):
    keep = keep_matrix(4, len(data), seed=0)
    train_and_query(data, keep, recipe, store_root=tmp_path, quiet=True)
    other = keep_matrix(4, len(data), seed=1)
    with pytest.raises(ValidationError, match="row 0 differs from the subset model 0"):
        train_and_query(data, other, recipe, store_root=tmp_path, quiet=True)
    # the same rows plus new ones: only the new ones are trained
    bigger = np.concatenate([keep, keep_matrix(2, len(data), seed=3)])
    assert train_and_query(data, bigger, recipe, store_root=tmp_path, quiet=True).trained == (4, 5)


def test_manifest_contents(tmp_path, data, recipe):
    result = train_and_query(data, 2, recipe, store_root=tmp_path, quiet=True)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["config_hash"] == result.config_hash
    assert config_hash(manifest["description"]) == result.config_hash
    assert manifest["description"]["dataset"]["fingerprint"] == dataset_fingerprint(
        data.X, data.y, data.record_ids
    )
    assert manifest["description"]["recipe"]["config"]["hidden_sizes"] == [16]
    assert set(manifest["versions"]) >= {"python", "numpy", "torch", "miaudit"}
    np.testing.assert_array_equal(np.load(result.run_dir / manifest["keep"]["file"]), result.keep)
    np.testing.assert_array_equal(np.load(result.run_dir / "record_ids.npy"), data.record_ids)
    weights = result.weights(1)
    assert weights["linear0.weight"].shape == (64, 16)
    assert not list(result.run_dir.rglob("*.tmp-*"))


def test_dataset_fingerprint_sees_every_byte(data):
    base = dataset_fingerprint(data.X, data.y, data.record_ids)
    X = data.X.copy()
    X[3, 7] += 1e-6
    y = data.y.copy()
    y[0] = (y[0] + 1) % 10
    ids = data.record_ids.copy()
    ids[5] = "other"
    assert (
        len(
            {
                base,
                dataset_fingerprint(X, data.y, data.record_ids),
                dataset_fingerprint(data.X, y, data.record_ids),
                dataset_fingerprint(data.X, data.y, ids),
            }
        )
        == 4
    )


def test_store_open_rejects_foreign_manifest(tmp_path, data):
    store = RunStore(tmp_path)
    run = store.open({"a": 1}, data.record_ids, recipe="x")
    (run.folder / "manifest.json").write_text("{not json")
    # A damaged manifest is moved aside (with a warning) and the run starts afresh.
    again = store.open({"a": 1}, data.record_ids, recipe="x")
    assert again.manifest["models"] == {}
    assert len(list(run.folder.glob("manifest.json.corrupt-*"))) == 1


# ----------------------------------------------------------------------------- bad input
def test_nan_features_are_refused(tmp_path, data, recipe):
    bad = Dataset(X=data.X.copy(), y=data.y, record_ids=data.record_ids, n_classes=10)
    bad.X[2, 3] = np.nan
    with pytest.raises(ValidationError, match="1 NaN"):
        train_and_query(bad, 2, recipe, store_root=tmp_path, quiet=True)


def test_labels_out_of_range_are_refused(tmp_path, data, recipe):
    bad = Dataset(X=data.X, y=data.y.copy(), record_ids=data.record_ids, n_classes=10)
    bad.y[0] = 10
    with pytest.raises(ValidationError, match=r"labels must be in 0..9"):
        train_and_query(bad, 2, recipe, store_root=tmp_path, quiet=True)


def test_unknown_names_list_the_valid_ones(tmp_path, data, recipe):
    with pytest.raises(
        UnknownNameError, match="Valid training recipes: callable, opacus, sklearn, torch-cnn"
    ):
        train_and_query(data, 2, "torch-mpl", store_root=tmp_path)
    with pytest.raises(UnknownNameError, match="Did you mean 'torch-mlp'"):
        train_and_query(data, 2, "torch-mpl", store_root=tmp_path)
    with pytest.raises(UnknownNameError, match="Valid executors: local, processes, ray, threads"):
        train_and_query(data, 2, recipe, store_root=tmp_path, executor="dask")
    with pytest.raises(UnknownNameError, match="Valid query augmentations: identity, lira-18"):
        train_and_query(data, 2, recipe, queries=["idenity"], store_root=tmp_path)


def test_keep_shape_must_match_dataset(tmp_path, data, recipe):
    with pytest.raises(ValidationError, match=r"the dataset has 400 records; expected shape"):
        train_and_query(data, np.ones((3, 399), bool), recipe, store_root=tmp_path)
    empty = keep_matrix(3, len(data), seed=0)
    empty[1] = False
    with pytest.raises(ValidationError, match=r"models \[1\] have no training record"):
        train_and_query(data, empty, recipe, store_root=tmp_path)
    with pytest.raises(ValidationError, match="number of models >= 1"):
        train_and_query(data, 0, recipe, store_root=tmp_path)


def test_dataset_too_small_for_the_split(tmp_path, recipe):
    tiny = Dataset(X=np.zeros((1, 4), np.float32), y=[0], record_ids=[0], n_classes=2)
    with pytest.raises(ValidationError, match="n_records"):
        train_and_query(tiny, 2, recipe, store_root=tmp_path)


def test_image_only_queries_on_flat_data(tmp_path, data, recipe):
    with pytest.raises(ValidationError, match="query 'mirror' needs images"):
        train_and_query(
            data, 2, recipe, queries=["identity", "mirror"], store_root=tmp_path, quiet=True
        )


class RecordingExecutor(LocalExecutor):
    """Runs chunks in process and records their model ids."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[tuple[int, ...]] = []

    def map(self, fn, tasks):
        self.chunks += [task.model_ids for task in tasks]
        yield from super().map(fn, tasks)


def test_cpu_torch_chunks_hold_one_group_per_thread(data, recipe, tmp_path, monkeypatch):
    """However large the memory budget, a CPU torch chunk holds at most one vectorised group
    per torch thread, so models reach the store group by group."""
    from miaudit.train import ensemble

    monkeypatch.setattr(ensemble, "GROUP_STEP_FLOP", 1.0)  # one model per group
    ex = RecordingExecutor()
    train_and_query(data, 3, recipe, store_root=tmp_path, executor=ex, quiet=True)
    assert ex.chunks == [(0,), (1,), (2,)]
    torch.set_num_threads(2)
    ex = RecordingExecutor()
    train_and_query(data, 5, recipe, store_root=tmp_path, executor=ex, quiet=True)
    assert ex.chunks == [(3, 4)]  # the 2 new models: one chunk, one group per thread
