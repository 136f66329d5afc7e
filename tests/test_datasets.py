"""Built-in datasets and the dataset registry (miaudit.data.builtin, miaudit.data.registry)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_digits as sk_load_digits
from threadpoolctl import threadpool_limits

from miaudit.data import builtin, list_datasets, load_dataset
from miaudit.data.builtin import LatentMixtureSpec, kmeans_labels, sample_baskets
from miaudit.data.registry import dataset_parameters
from miaudit.exceptions import UnknownNameError, ValidationError

SMALL = {"n_records": 1500, "n_features": 120, "n_classes": 10, "basket_size": 12}


def test_registry_lists_builtin_datasets():
    names = list_datasets()
    assert {"digits", "purchase-like", "texas-like"} <= set(names)
    assert dataset_parameters("purchase-like")["n_features"] == 600
    assert dataset_parameters("texas-like")["n_features"] == 6170


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'purchase'.*digits.*texas-like"):
        load_dataset("purchase")


def test_bad_parameter_lists_valid_parameters():
    with pytest.raises(ValidationError, match=r"dataset 'digits': bad parameters \['flatten'\]"):
        load_dataset("digits", flatten=True)
    with pytest.raises(ValidationError, match="valid parameters: n_records, n_features"):
        load_dataset("purchase-like", n_record=10)


def test_digits_images_match_sklearn():
    ds = load_dataset("digits")
    bunch = sk_load_digits()
    assert ds.X.shape == (1797, 1, 8, 8) and ds.X.dtype == np.float32
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    np.testing.assert_array_equal(ds.X[:, 0] * 16, bunch.images)
    np.testing.assert_array_equal(ds.y, bunch.target)
    assert ds.n_classes == 10
    assert ds.record_ids[0] == "digits-0000" and ds.record_ids[-1] == "digits-1796"
    flat = load_dataset("digits", flat=True)
    assert flat.X.shape == (1797, 64)
    np.testing.assert_array_equal(flat.X * 16, bunch.data)


def test_purchase_like_shape_binary_baskets_and_ids():
    ds = load_dataset("purchase-like", seed=3, **SMALL)
    assert ds.X.shape == (1500, 120) and ds.X.dtype == np.float32
    assert set(np.unique(ds.X)) == {0.0, 1.0}
    np.testing.assert_array_equal(ds.X.sum(axis=1), np.full(1500, 12))
    assert ds.y.min() >= 0 and ds.y.max() < 10 and ds.n_classes == 10
    assert ds.record_ids[7] == "purchase-like-000007"
    assert ds.meta["mixing"] == 0.25 and ds.meta["seed"] == 3


def test_purchase_like_is_deterministic_for_a_seed():
    a = load_dataset("purchase-like", seed=5, **SMALL)
    b = load_dataset("purchase-like", seed=5, **SMALL)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    c = load_dataset("purchase-like", seed=6, **SMALL)
    assert (a.X != c.X).any()


def test_kmeans_labels_do_not_depend_on_thread_count():
    ds = load_dataset("purchase-like", seed=1, **SMALL)
    labels = []
    for n_threads in (1, 2):
        with threadpool_limits(n_threads):
            labels.append(kmeans_labels(ds.X, 10, np.random.default_rng(0)))
    np.testing.assert_array_equal(labels[0], labels[1])


def test_labels_are_nearest_class_centroid():
    # k-means labels at convergence: each record is closest to the mean of its own class.
    ds = load_dataset("purchase-like", seed=2, **SMALL)
    centroids = np.stack([ds.X[ds.y == c].mean(axis=0) for c in range(ds.n_classes)])
    dist = ((ds.X[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    assert (dist.argmin(axis=1) == ds.y).mean() > 0.98
    counts = np.bincount(ds.y, minlength=10)
    assert counts.min() > 0.2 * counts.mean()  # no degenerate singleton classes


def test_sample_baskets_uniform_when_all_noise():
    # noise = 1: every feature is in a basket of m of d with probability m / d.
    spec = LatentMixtureSpec(4000, 50, 2, 3, 5, 10, 0.5, 1.0)
    X = sample_baskets(
        spec, builtin.profile_matrix(spec, np.random.default_rng(0)), np.random.default_rng(1)
    )
    counts = X.sum(axis=0)
    assert stats.chisquare(counts).pvalue > 1e-3
    np.testing.assert_allclose(counts.mean() / 4000, 10 / 50)


def test_sample_baskets_follow_profile_without_noise():
    # noise = 0, one profile with mass 0.7/0.2/0.1 on features 0,1,2 and basket size 1:
    # the chosen feature follows those probabilities and nothing else is ever chosen.
    spec = LatentMixtureSpec(6000, 8, 2, 1, 3, 1, 1.0, 0.0)
    profiles = np.zeros((1, 8))
    profiles[0, :3] = [0.7, 0.2, 0.1]
    X = sample_baskets(spec, profiles, np.random.default_rng(0))
    counts = X.sum(axis=0)
    assert counts[3:].sum() == 0
    assert stats.chisquare(counts[:3], 6000 * np.array([0.7, 0.2, 0.1])).pvalue > 1e-3


def test_texas_like_small():
    ds = load_dataset("texas-like", n_records=400, n_classes=5, seed=0)
    assert ds.X.shape == (400, 6170)
    np.testing.assert_array_equal(ds.X.sum(axis=1), np.full(400, 60))
    assert ds.record_ids[0] == "texas-like-000000"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_records": 5, "n_classes": 10}, "n_records: expected an integer >= 10"),
        ({"basket_size": 600}, "basket_size: 600 must be smaller than n_features=600"),
        ({"profile_size": 700}, "profile_size: 700 exceeds n_features=600"),
        ({"mixing": 0.0}, "mixing: expected a positive number"),
        ({"mixing": "0.25"}, "mixing: expected a positive number, got '0.25'"),
        ({"noise": 1.5}, r"noise: expected a value in \[0, 1\]"),
        ({"n_classes": 1}, "n_classes: expected an integer >= 2"),
        ({"seed": None}, "seed: expected an int"),
    ],
)
def test_purchase_like_validation(params, message):
    with pytest.raises(ValidationError, match=message):
        load_dataset("purchase-like", **params)


@pytest.mark.slow
def test_purchase_like_overfits_like_purchase100():
    # Calibration (docs/data.md): a 600-256-100 tanh MLP trained on 10,000 records reaches ~100%
    # train accuracy and clearly lower test accuracy (Shokri et al. report 0.66 on Purchase-100).
    torch = pytest.importorskip("torch")
    ds = load_dataset("purchase-like", seed=0)
    X, y = torch.from_numpy(ds.X), torch.from_numpy(ds.y)
    train, test = slice(0, 10_000), slice(10_000, 20_000)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(600, 256), torch.nn.Tanh(), torch.nn.Linear(256, 100)
        )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        perm = torch.randperm(10_000, generator=gen)
        for i in range(0, 10_000, 128):
            b = perm[i : i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(X[train][b]), y[train][b]).backward()
            opt.step()
    with torch.no_grad():
        acc_train = (model(X[train]).argmax(1) == y[train]).float().mean().item()
        acc_test = (model(X[test]).argmax(1) == y[test]).float().mean().item()
    assert acc_train > 0.99
    assert 0.55 < acc_test < 0.78
