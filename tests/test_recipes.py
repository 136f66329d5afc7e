"""Recipe registry, typed configs and their errors; the sklearn and callable recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from torch import nn

from miaudit import train
from miaudit.audit.engine import train_and_query
from miaudit.data import Dataset, keep_matrix
from miaudit.exceptions import UnknownNameError, ValidationError
from miaudit.train import TorchMLPConfig, make_config, make_recipe, model_seed
from miaudit.train.sklearn_recipe import LOG_PROBA_FLOOR, logits_from_proba

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.data[:500] / 16.0).astype(np.float32), d.target[:500].astype(np.int64)


# ----------------------------------------------------------------------------- configs
def test_registry_lists_the_recipes():
    assert train.names() == ["callable", "opacus", "sklearn", "torch-cnn", "torch-mlp"]
    with pytest.raises(UnknownNameError, match="Valid training recipes: callable, opacus, sklearn"):
        make_recipe("xgboost")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lr": 0.0}, r"TorchMLPConfig.lr: expected a number in \(0.0, inf\), got 0.0"),
        ({"momentum": 1.0}, r"TorchMLPConfig.momentum: expected a number in \[0.0, 1.0\)"),
        ({"dropout": -0.1}, "TorchMLPConfig.dropout"),
        ({"label_smoothing": 1.0}, "TorchMLPConfig.label_smoothing"),
        ({"epochs": 0}, r"TorchMLPConfig.epochs: expected an integer >= 1, got 0"),
        ({"batch_size": 2.5}, "TorchMLPConfig.batch_size"),
        ({"hidden_sizes": (64, 0)}, r"TorchMLPConfig.hidden_sizes: expected integers >= 1"),
        ({"hidden_sizes": "wide"}, "TorchMLPConfig.hidden_sizes: expected"),
        ({"betas": (0.9,)}, r"TorchMLPConfig.betas: expected two numbers in \[0, 1\)"),
        ({"optimizer": "sgd"}, "optimizer 'sgd'.*Valid optimizers: adam, sgd-momentum"),
        ({"activation": "gelu"}, "Valid activations: relu, tanh"),
        ({"lr_schedule": "linear"}, "Valid learning-rate schedules: constant, cosine, step"),
        ({"lr_step_gamma": 0.0}, "TorchMLPConfig.lr_step_gamma"),
        ({"augment_crop": -1}, "TorchMLPConfig.augment_crop: expected an integer >= 0"),
        ({"augment_flip": "yes"}, "TorchMLPConfig.augment_flip: expected true or false"),
        ({"seed": -3}, "TorchMLPConfig.seed"),
    ],
)
def test_bad_torch_config_values(params, message):
    with pytest.raises(ValidationError, match=message):
        make_config("torch-mlp", **params)


def test_unknown_config_key_lists_valid_keys():
    with pytest.raises(ValidationError, match=r"unknown parameter\(s\) \['hiden_sizes'\]"):
        make_config("torch-mlp", hiden_sizes=(3,))
    with pytest.raises(ValidationError, match=r"Did you mean 'hidden_sizes'.*Valid parameters: "):
        make_config("torch-mlp", hiden_sizes=(3,))


def test_config_normalises_lists_and_names():
    cfg = make_config("torch-mlp", hidden_sizes=[32, 16], optimizer="ADAM", betas=[0.8, 0.9])
    assert cfg == TorchMLPConfig(hidden_sizes=(32, 16), optimizer="adam", betas=(0.8, 0.9))
    assert make_recipe("torch-cnn").config.channels == (32, 64)
    with pytest.raises(ValidationError, match="either config or parameters"):
        make_recipe("torch-mlp", cfg, epochs=3)
    with pytest.raises(ValidationError, match="expected a TorchCNNConfig"):
        train.get("torch-cnn")(cfg)


def test_model_seed_streams_are_distinct_and_stable():
    seeds = {model_seed(0, i, s) for i in range(50) for s in range(3)}
    assert len(seeds) == 150
    assert all(0 <= v < 2**63 for v in seeds)
    assert model_seed(4, 7, 1) == model_seed(4, 7, 1)
    assert model_seed(4, 7) != model_seed(5, 7)


def test_cnn_needs_images_and_augmentation_needs_images(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    with pytest.raises(ValidationError, match="torch-cnn: expects images"):
        make_recipe("torch-cnn").train_chunk(X, y, 10, keep, [0, 1], ("identity",))
    with pytest.raises(ValidationError, match="augment_flip/augment_crop need images"):
        make_recipe("torch-mlp", augment_flip=True).train_chunk(
            X, y, 10, keep[:1], [0], ("identity",)
        )
    with pytest.raises(ValidationError, match="augment_crop: 8 pixels must be smaller"):
        make_recipe("torch-mlp", augment_crop=8).train_chunk(
            X.reshape(-1, 1, 8, 8), y, 10, keep[:1], [0], ("identity",)
        )


def test_memory_estimate_counts_parameters_and_observations():
    recipe = make_recipe("torch-mlp", hidden_sizes=(256,), batch_size=128)
    params = 600 * 256 + 256 + 256 * 100 + 100
    expected = 4 * (params * 3 + 128 * (600 + 4 * 356) + 20000 * 2 * 100 + 1024 * 356)
    assert recipe.bytes_per_model((600,), 100, 20000, 2) == expected
    adam = make_recipe("torch-mlp", hidden_sizes=(256,), optimizer="adam")
    assert adam.bytes_per_model((600,), 100, 20000, 2) - expected == 4 * params


# ----------------------------------------------------------------------------- sklearn
def test_sklearn_logits_are_floored_log_probabilities(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    keep[0, y == 9] = False  # model 0 never sees class 9
    recipe = make_recipe("sklearn", estimator=LogisticRegression(max_iter=300), n_jobs=2, seed=11)
    results = recipe.train_chunk(X, y, 10, keep, [0, 1], ("identity",))
    ref = LogisticRegression(max_iter=300).fit(X[keep[0]], y[keep[0]])
    logits = results[0].observations[:, 0]
    np.testing.assert_allclose(logits[:, :9], np.log(ref.predict_proba(X)), rtol=1e-4, atol=1e-4)
    assert np.all(logits[:, 9] == np.float32(LOG_PROBA_FLOOR))
    assert LOG_PROBA_FLOOR == pytest.approx(np.log(np.finfo(np.float32).tiny))
    out = ~keep[0]
    assert results[0].test_acc == pytest.approx(float((ref.predict(X[out]) == y[out]).mean()))
    assert results[0].weights_format == "skops"


def test_log_proba_floor_of_zero():
    np.testing.assert_array_equal(
        logits_from_proba(np.array([[0.0, 1.0]])), np.array([[LOG_PROBA_FLOOR, 0.0]], np.float32)
    )


def test_sklearn_random_state_is_the_model_seed(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    from sklearn.ensemble import RandomForestClassifier

    recipe = make_recipe(
        "sklearn", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 5}
    )
    res = recipe.train_chunk(X, y, 10, keep[:1], [3], ("identity",))[0]
    ref = RandomForestClassifier(n_estimators=5, random_state=model_seed(0, 3) % 2**32)
    ref.fit(X[keep[0]], y[keep[0]])
    np.testing.assert_allclose(
        res.observations[:, 0], logits_from_proba(ref.predict_proba(X)), atol=1e-6
    )


def test_sklearn_decision_function_binary(digits):
    X, y = digits
    binary = (y >= 5).astype(np.int64)
    keep = keep_matrix(2, len(X), seed=1)
    recipe = make_recipe("sklearn", estimator=LinearSVC(), output="decision-function")
    res = recipe.train_chunk(X, binary, 2, keep[:1], [0], ("identity",))[0]
    ref = LinearSVC(random_state=model_seed(0, 0) % 2**32).fit(X[keep[0]], binary[keep[0]])
    np.testing.assert_allclose(res.observations[:, 0, 0], 0.0)
    np.testing.assert_allclose(res.observations[:, 0, 1], ref.decision_function(X), rtol=1e-5)


def test_bad_sklearn_configs():
    with pytest.raises(ValidationError, match=r"SklearnConfig\.estimator: expected an estimator"):
        make_config("sklearn", estimator=LogisticRegression)
    with pytest.raises(ValidationError, match="not a classifier"):
        make_config("sklearn", estimator="sklearn.preprocessing.StandardScaler")
    with pytest.raises(ValidationError, match=r"SklearnConfig\.output: expected one of auto"):
        make_config("sklearn", output="proba")
    with pytest.raises(ValidationError, match="has no decision_function"):
        make_config(
            "sklearn", estimator="sklearn.naive_bayes.GaussianNB", output="decision-function"
        )
    with pytest.raises(ValidationError, match=r"SklearnConfig\.params"):
        make_config("sklearn", estimator="sklearn.svm.SVC", params={"cc": 1})
    with pytest.raises(ValidationError, match=r"SklearnConfig\.n_jobs"):
        make_config("sklearn", n_jobs=0)


def test_sklearn_run_saves_skops_and_loads_it_back(tmp_path, digits):
    X, y = digits
    data = Dataset(X=X, y=y, record_ids=np.arange(len(X)), n_classes=10)
    recipe = make_recipe("sklearn", estimator=LogisticRegression(max_iter=200))
    result = train_and_query(data, 2, recipe, store_root=tmp_path, quiet=True)
    model = result.weights(1)
    np.testing.assert_allclose(
        logits_from_proba(model.predict_proba(X)), result.observations([1])[0, :, 0], atol=1e-5
    )
    other = make_recipe("sklearn", estimator=LogisticRegression(max_iter=200, C=0.5))
    assert train_and_query(data, 2, other, store_root=tmp_path, quiet=True).run_dir != (
        result.run_dir
    )


# ----------------------------------------------------------------------------- callable
def _train_torch(X, y, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    xs, ys = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


class _Centroids:
    """Not scikit-learn: a nearest-centroid model with predict_proba (softmax of -distance)."""

    def __init__(self, X, y):
        self.centres = np.stack([X[y == c].mean(0) for c in range(10)])

    def predict_proba(self, X):
        d = -((X.reshape(len(X), -1)[:, None] - self.centres[None]) ** 2).sum(-1)
        e = np.exp(d - d.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def test_callable_recipe_torch_module_is_saved(tmp_path, digits):
    X, y = digits
    data = Dataset(X=X, y=y, record_ids=np.arange(len(X)), n_classes=10)
    result = train_and_query(
        data, 2, make_recipe("callable", train=_train_torch), store_root=tmp_path, quiet=True
    )
    weights = result.weights(0)
    assert weights["1.weight"].shape == (10, 64)
    logits = X @ weights["1.weight"].T + weights["1.bias"]
    np.testing.assert_allclose(result.observations([0])[0, :, 0], logits, atol=1e-5)
    assert result.model_info[0]["test_acc"] > 0.7


def test_callable_recipe_predict_proba_and_plain_callables(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    res = make_recipe("callable", train=lambda X, y, seed: _Centroids(X, y)).train_chunk(
        X, y, 10, keep[:1], [0], ("identity",)
    )[0]
    ref = _Centroids(X[keep[0]], y[keep[0]]).predict_proba(X)
    np.testing.assert_allclose(res.observations[:, 0], logits_from_proba(ref), atol=1e-5)
    assert res.weights is None  # neither torch nor scikit-learn: not persisted

    def fit_plain(X, y, seed):
        centres = _Centroids(X, y)
        return lambda Z: centres.predict_proba(Z)

    recipe = make_recipe("callable", train=fit_plain, output="probs")
    probs = recipe.train_chunk(X, y, 10, keep[:1], [0], ("identity",))[0]
    np.testing.assert_allclose(probs.observations[:, 0], logits_from_proba(ref), atol=1e-5)


def test_callable_errors_and_hash(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    with pytest.raises(ValidationError, match=r"CallableConfig\.train: expected a function"):
        make_config("callable", train=3)
    with pytest.raises(ValidationError, match="returned int, which is neither a torch module"):
        make_recipe("callable", train=lambda X, y, s: 3).train_chunk(
            X, y, 10, keep[:1], [0], ("identity",)
        )
    with pytest.raises(ValidationError, match=r"expected outputs of shape \(500, 10\)"):
        make_recipe("callable", train=lambda X, y, s: lambda Z: np.zeros((len(Z), 3))).train_chunk(
            X, y, 10, keep[:1], [0], ("identity",)
        )
    a = make_recipe("callable", train=_train_torch).describe()
    b = make_recipe("callable", train=_train_torch, tag="v2").describe()
    assert a["config"]["train"].endswith(":_train_torch")
    assert len(a["config"]["source_sha256"]) == 64
    assert a != b


def test_chunk_keep_rows_are_checked(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    keep[1] = False
    for name in ("torch-mlp", "sklearn", "callable"):
        params = {"train": _train_torch} if name == "callable" else {}
        with pytest.raises(ValidationError, match=r"keep: models \[9\] have no training record"):
            make_recipe(name, **params).train_chunk(X, y, 10, keep, [4, 9], ("identity",))
