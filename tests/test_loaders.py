"""Loaders for users' files, each tested on small files written in the real format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miaudit.data import load_dataset
from miaudit.data.loaders import encode_labels, file_sha256, load_file
from miaudit.exceptions import UnknownNameError, ValidationError

# ------------------------------------------------------------------------------------- tables


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rid": ["a", "b", "c", "d"],
            "f1": [0.5, 1.0, 2.0, 3.0],
            "f2": [1, 0, 1, 0],
            "species": ["dog", "cat", "dog", "emu"],
        }
    )


def test_csv_with_string_labels_and_id_column(tmp_path, table):
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    ds = load_dataset("csv", path=path, label_col="species", id_col="rid")
    np.testing.assert_array_equal(ds.X, [[0.5, 1], [1, 0], [2, 1], [3, 0]])
    assert ds.X.dtype == np.float32
    assert ds.meta["label_names"] == ["cat", "dog", "emu"]
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 2])
    assert ds.n_classes == 3
    assert ds.record_ids.tolist() == ["a", "b", "c", "d"]
    assert ds.meta["feature_names"] == ["f1", "f2"]
    assert ds.meta["sha256"]["train.csv"] == file_sha256(path)
    # load_file dispatches on the suffix to the same loader
    same = load_file(path, label_col="species", id_col="rid")
    np.testing.assert_array_equal(same.X, ds.X)


def test_csv_integer_labels_default_ids_and_feature_cols(tmp_path):
    path = tmp_path / "t.tsv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "z": [9, 9, 9], "y": [0, 4, 2]}).to_csv(
        path, sep="\t", index=False
    )
    ds = load_file(path, label_col="y", feature_cols=["x"])
    np.testing.assert_array_equal(ds.y, [0, 4, 2])
    assert ds.n_classes == 5
    assert ds.X.shape == (3, 1)
    np.testing.assert_array_equal(ds.record_ids, [0, 1, 2])
    assert "label_names" not in ds.meta


def test_parquet_roundtrip(tmp_path, table):
    path = tmp_path / "train.parquet"
    table.to_parquet(path)
    ds = load_dataset("parquet", path=path, label_col="species", id_col="rid", n_classes=4)
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 2])
    assert ds.n_classes == 4
    np.testing.assert_array_equal(load_file(path, label_col="species", id_col="rid").X, ds.X)


def test_missing_label_column_lists_columns(tmp_path, table):
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    with pytest.raises(
        ValidationError, match=r"label_col \['label'\] not found; columns present: rid, f1"
    ):
        load_dataset("csv", path=path, label_col="label")
    with pytest.raises(ValidationError, match=r"feature_cols \['f9'\] not found"):
        load_dataset("csv", path=path, label_col="species", feature_cols=["f1", "f9"])


def test_nan_features_name_their_columns(tmp_path, table):
    table.loc[1, "f2"] = np.nan
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    with pytest.raises(
        ValidationError, match=r"1 NaN or infinite feature values in columns \['f2'\]"
    ):
        load_dataset("csv", path=path, label_col="species", id_col="rid")


def test_non_numeric_feature_column(tmp_path, table):
    path = tmp_path / "train.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ValidationError, match=r"non-numeric: \['rid'\]"):
        load_dataset("csv", path=path, label_col="species")


def test_label_errors():
    with pytest.raises(ValidationError, match="1 missing labels"):
        encode_labels(np.array(["a", None], dtype=object), "y")
    with pytest.raises(ValidationError, match=r"1 missing \(NaN\) labels"):
        encode_labels(np.array([0.0, np.nan]), "y")
    with pytest.raises(ValidationError, match=r"labels must be in 0\.\.2.*e\.g\. \[-1\]"):
        encode_labels(np.array([0, -1, 2]), "y")
    with pytest.raises(ValidationError, match=r"labels must be in 0\.\.1 \(2 classes\)"):
        encode_labels(np.array([0, 1, 5]), "y", n_classes=2)
    with pytest.raises(ValidationError, match="3 distinct labels but n_classes=2"):
        encode_labels(np.array(["a", "b", "c"]), "y", n_classes=2)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ValidationError, match="path: no such file"):
        load_dataset("csv", path=tmp_path / "nope.csv", label_col="y")
    (tmp_path / "data.xlsx").write_bytes(b"")
    with pytest.raises(UnknownNameError, match=r"unknown file format '\.xlsx'.*\.csv.*\.npz"):
        load_file(tmp_path / "data.xlsx")
    with pytest.raises(ValidationError, match="is a directory, expected a file"):
        load_file(tmp_path)
    with pytest.raises(
        ValidationError, match=r"bad parameters \['label_col'\].*valid parameters: path"
    ):
        load_dataset("csv", label_col="y")


# ------------------------------------------------------------------------------------- npz


def test_npz_with_and_without_ids(tmp_path):
    X = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=np.array([1, 0, 1, 1]), ids=np.array([10, 11, 12, 13]))
    ds = load_file(path)
    np.testing.assert_array_equal(ds.X, X)
    assert ds.X.shape == (4, 2, 3) and ds.n_classes == 2
    np.testing.assert_array_equal(ds.record_ids, [10, 11, 12, 13])
    path2 = tmp_path / "e.npz"
    np.savez(path2, features=X, labels=np.array(["x", "y", "x", "z"]))
    ds2 = load_dataset("npz", path=path2, x_key="features", y_key="labels")
    np.testing.assert_array_equal(ds2.record_ids, [0, 1, 2, 3])
    assert ds2.meta["label_names"] == ["x", "y", "z"]


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((2, 2)), labels=np.array([0, 1]))
    with pytest.raises(
        ValidationError, match="y_key 'y' not in the archive; arrays present: X, labels"
    ):
        load_file(path)
    bad = tmp_path / "obj.npz"
    np.savez(bad, X=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(ValidationError, match="cannot read the archive safely"):
        load_file(bad)
    nan = tmp_path / "nan.npz"
    np.savez(nan, X=np.array([[0.0, np.nan]]), y=np.array([0]))
    with pytest.raises(ValidationError, match="contains 1 NaN values"):
        load_file(nan)


# ---------------------------------------------------------------------- Purchase-100, Texas-100


def _binary(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return (rng.random((n, d)) < 0.1).astype(int)


def test_purchase100_file(tmp_path):
    rng = np.random.default_rng(0)
    X, labels = _binary(rng, 5, 600), np.array([1, 100, 37, 2, 1])
    path = tmp_path / "dataset_purchase"
    with path.open("w") as fh:
        for lab, row in zip(labels, X, strict=True):
            fh.write(",".join(str(v) for v in [lab, *row]) + "\n")
    ds = load_dataset("purchase100", path=path)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.y, labels - 1)
    assert ds.n_classes == 100 and ds.X.shape == (5, 600)
    assert ds.record_ids[4] == "purchase100-000004"


def test_purchase100_rejects_zero_based_labels(tmp_path):
    path = tmp_path / "dataset_purchase"
    path.write_text("0,1,0\n3,0,1\n")
    with pytest.raises(ValidationError, match=r"labels must be 1\.\.100 as distributed; found 0"):
        load_dataset("purchase100", path=path)


def _write_texas(folder: Path, X: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True)
    (folder / "feats").write_text("\n".join(",".join(map(str, r)) for r in X) + "\n")
    (folder / "labels").write_text("\n".join(map(str, labels)) + "\n")


def test_texas100_folder_layouts(tmp_path):
    rng = np.random.default_rng(1)
    X, labels = _binary(rng, 4, 50), np.array([5, 100, 1, 5])
    _write_texas(tmp_path / "texas" / "100", X, labels)
    for root in (tmp_path, tmp_path / "texas" / "100"):
        ds = load_dataset("texas100", path=root)
        np.testing.assert_array_equal(ds.X, X)
        np.testing.assert_array_equal(ds.y, labels - 1)
        assert ds.record_ids[0] == "texas100-000000"
        assert set(ds.meta["sha256"]) == {"feats", "labels"}


def test_texas100_errors(tmp_path):
    with pytest.raises(ValidationError, match="no 'feats' and 'labels' files in any of"):
        load_dataset("texas100", path=tmp_path)
    with pytest.raises(ValidationError, match="path: no such directory"):
        load_dataset("texas100", path=tmp_path / "missing")
    (tmp_path / "feats").write_text("1,0\n")
    with pytest.raises(ValidationError, match="path: is a file, expected a directory"):
        load_dataset("texas100", path=tmp_path / "feats")
    _write_texas(tmp_path / "t", np.ones((3, 4), dtype=int), np.array([1, 2]))
    with pytest.raises(ValidationError, match="3 feature rows but 2 labels"):
        load_dataset("texas100", path=tmp_path / "t")


# ------------------------------------------------------------------------------------- CIFAR


def _cifar_batch(rng: np.random.Generator, n: int, label_key: bytes, n_classes: int) -> dict:
    return {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, n_classes, size=n).tolist(),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def _dump(obj: object, path: Path) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=2)


@pytest.fixture
def cifar10_dir(tmp_path) -> tuple[Path, dict[str, dict]]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batches[name] = _cifar_batch(rng, 3, b"labels", 10)
        _dump(batches[name], folder / name)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump({b"label_names": names, b"num_vis": 3072}, folder / "batches.meta")
    return folder, batches


def test_cifar10_requires_allow_pickle(cifar10_dir):
    folder, _ = cifar10_dir
    with pytest.raises(
        ValidationError, match=r"pickle files.*arbitrary code; pass allow_pickle=True"
    ):
        load_dataset("cifar10", path=folder)


def test_cifar10_pixels_labels_ids(cifar10_dir):
    folder, batches = cifar10_dir
    ds = load_dataset("cifar10", path=folder, allow_pickle=True)
    assert ds.X.shape == (15, 3, 32, 32) and ds.X.dtype == np.float32
    assert ds.n_classes == 10 and ds.meta["label_names"][9] == "truck"
    data = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    for i, c, r, col in [(0, 0, 0, 0), (4, 1, 0, 5), (14, 2, 31, 31), (7, 0, 3, 1)]:
        assert ds.X[i, c, r, col] == np.float32(data[i, c * 1024 + r * 32 + col] / np.float32(255))
    labels = [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.record_ids[3] == "cifar10-data_batch_2-00000"
    test = load_dataset("cifar10", path=folder, split="test", allow_pickle=True)
    np.testing.assert_array_equal(test.y, batches["test_batch"][b"labels"])
    assert len(load_dataset("cifar10", path=folder, split="all", allow_pickle=True)) == 18


def test_cifar_errors(cifar10_dir):
    folder, _ = cifar10_dir
    with pytest.raises(ValidationError, match="split: unknown split 'val'; valid splits: train"):
        load_dataset("cifar10", path=folder, split="val", allow_pickle=True)
    os.remove(folder / "data_batch_3")
    with pytest.raises(ValidationError, match=r"cifar10 batch: no such file.*data_batch_3"):
        load_dataset("cifar10", path=folder, allow_pickle=True)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_unpickler_refuses_arbitrary_callables(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump({b"data": _Evil(), b"fine_labels": [0]}, folder / "train")
    with pytest.raises(ValidationError, match=r"refusing to unpickle .*getcwd"):
        load_dataset("cifar100", path=folder, allow_pickle=True)


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train = _cifar_batch(rng, 4, b"fine_labels", 100)
    train[b"coarse_labels"] = [0, 1, 2, 3]
    _dump(train, folder / "train")
    _dump(_cifar_batch(rng, 2, b"fine_labels", 100), folder / "test")
    ds = load_dataset("cifar100", path=folder, allow_pickle=True)
    np.testing.assert_array_equal(ds.y, train[b"fine_labels"])
    assert ds.n_classes == 100 and ds.record_ids[0] == "cifar100-train-00000"
    assert "label_names" not in ds.meta  # no meta file written
    bad = _cifar_batch(rng, 2, b"labels", 100)  # CIFAR-10 key in a CIFAR-100 folder
    _dump(bad, folder / "test")
    with pytest.raises(ValidationError, match=r"no b'fine_labels' entry"):
        load_dataset("cifar100", path=folder, split="test", allow_pickle=True)


def test_extra_columns_are_kept_out_of_the_features(tmp_path):
    import numpy as np
    import pandas as pd

    from miaudit.data import load_file

    frame = pd.DataFrame({"a": [0.5, 1.5, 2.5, 3.5], "b": [1.0, 0.0, 1.0, 0.0],
                          "y": [0, 1, 0, 1], "is_member": [1, 0, 0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = load_file(tmp_path / "t.csv", label_col="y", extra_cols=["is_member"])
    assert ds.meta["feature_names"] == ["a", "b"]
    assert ds.X.shape == (4, 2)
    np.testing.assert_array_equal(ds.meta["columns"]["is_member"], [1, 0, 0, 1])


def test_a_saved_pandas_index_is_not_a_feature(tmp_path):
    """df.to_csv() writes the index as 'Unnamed: 0'; on a class-sorted file it is the label."""
    import pandas as pd

    from miaudit.data import load_file

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60),
                          "label": np.repeat([0, 1, 2], 20)})
    path = tmp_path / "sorted.csv"
    frame.to_csv(path)  # index written as the first, unnamed column
    with pytest.warns(UserWarning, match=r"ignoring index-like column\(s\) \['Unnamed: 0'\]"):
        ds = load_file(path, label_col="label")
    assert ds.X.shape == (60, 2)
    kept = load_file(path, label_col="label", feature_cols=["Unnamed: 0", "a"])
    assert kept.X.shape == (60, 2)  # named explicitly: taken as given
