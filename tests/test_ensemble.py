"""The vectorised torch ensemble against plain one-model-at-a-time PyTorch training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from miaudit.data import keep_matrix
from miaudit.exceptions import ValidationError
from miaudit.train import ensemble, make_recipe
from miaudit.train.architectures import StackedCNN, StackedMLP, cross_entropy_sum_grad
from miaudit.train.ensemble import (
    LR_SCHEDULES,
    NOISE_STREAM,
    ORDER_STREAM,
    compact_rows,
    learning_rates,
    model_generators,
    train_ensemble,
)
from miaudit.train.queries import QUERIES, apply_queries, identity_view, shift

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def _train_one_by_one(X, y, keep_row, hidden, epochs, batch, lr, momentum, seed):
    """How a user trains one MLP: nn.Sequential, torch.optim.SGD, shuffled minibatches."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(X.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, 10))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    xs, ys = torch.from_numpy(X[keep_row]), torch.from_numpy(y[keep_row])
    for _ in range(epochs):
        perm = torch.randperm(len(xs))
        for start in range(0, len(xs), batch):
            idx = perm[start : start + batch]
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(X)).argmax(1).numpy()
    return float((pred[~keep_row] == y[~keep_row]).mean())


def test_vectorised_accuracy_matches_one_by_one(digits):
    X, y = digits
    k, hidden, epochs, batch, lr, momentum = 4, 64, 8, 32, 0.05, 0.9
    keep = keep_matrix(k, len(X), seed=1)
    recipe = make_recipe(
        "torch-mlp",
        hidden_sizes=(hidden,),
        epochs=epochs,
        batch_size=batch,
        lr=lr,
        momentum=momentum,
        seed=3,
    )
    results = recipe.train_chunk(X, y, 10, keep, list(range(k)), ("identity",))
    vec = np.mean([r.test_acc for r in results])
    ref = np.mean(
        [
            _train_one_by_one(X, y, keep[i], hidden, epochs, batch, lr, momentum, 100 + i)
            for i in range(k)
        ]
    )
    assert vec > 0.9  # the models learned something
    assert abs(vec - ref) < 0.02, (vec, ref)
    # the test accuracy is the accuracy on the OUT records, recomputed here by hand
    obs = results[0].observations[:, 0]
    out = ~keep[0]
    assert results[0].test_acc == pytest.approx(float((obs[out].argmax(1) == y[out]).mean()))
    assert results[0].n_train == int(keep[0].sum())


@pytest.mark.parametrize(
    ("optimizer", "schedule"), [("sgd-momentum", "cosine"), ("adam", "step"), ("adam", "constant")]
)
def test_single_model_trajectory_equals_torch(digits, optimizer, schedule):
    """K = 1: same init, same minibatches → same weights as nn.Sequential + torch.optim."""
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)[:1]
    lr = 0.1 if optimizer == "sgd-momentum" else 0.01
    recipe = make_recipe(
        "torch-mlp",
        hidden_sizes=(32,),
        epochs=3,
        batch_size=50,
        lr=lr,
        momentum=0.9,
        weight_decay=1e-3,
        label_smoothing=0.1,
        optimizer=optimizer,
        lr_schedule=schedule,
        lr_step_epochs=1,
        lr_step_gamma=0.5,
    )
    net = recipe.build((64,), 10, [7])
    ref = nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    with torch.no_grad():
        ref[0].weight.copy_(net.params[0][0].T)
        ref[0].bias.copy_(net.params[1][0])
        ref[2].weight.copy_(net.params[2][0].T)
        ref[2].bias.copy_(net.params[3][0])
    xs, ys = torch.from_numpy(X), torch.from_numpy(y)
    order, noise = (model_generators(0, [7], s) for s in (ORDER_STREAM, NOISE_STREAM))
    train_ensemble(net, xs, ys, keep, recipe.config, order, noise)

    g_ref = model_generators(0, [7], ORDER_STREAM)[0]
    subset = torch.from_numpy(np.flatnonzero(keep[0]))
    steps = math.ceil(len(subset) / 50)
    if optimizer == "adam":
        opt = torch.optim.Adam(ref.parameters(), lr=lr, weight_decay=1e-3)
    else:
        opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9, weight_decay=1e-3)
    stream = subset[:0]
    for epoch in range(3):
        while len(stream) < steps * 50:  # the documented stream: concatenated permutations
            stream = torch.cat([stream, subset[torch.randperm(len(subset), generator=g_ref)]])
        batches, stream = stream[: steps * 50], stream[steps * 50 :]
        for s in range(steps):
            t = epoch * steps + s
            factor = {
                "cosine": 0.5 * (1 + math.cos(math.pi * t / (3 * steps))),
                "step": 0.5**epoch,
                "constant": 1.0,
            }[schedule]
            for group in opt.param_groups:
                group["lr"] = lr * factor
            idx = batches[s * 50 : (s + 1) * 50]
            loss = F.cross_entropy(ref(xs[idx]), ys[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    np.testing.assert_allclose(
        net.params[0][0].numpy(), ref[0].weight.detach().T.numpy(), atol=5e-5
    )
    np.testing.assert_allclose(net.params[3][0].numpy(), ref[2].bias.detach().numpy(), atol=5e-5)


def test_manual_backward_matches_autograd():
    gens = model_generators(0, range(3), 0)
    net = StackedMLP(5, (7, 6), 4, "tanh", gens)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 5, generator=g)
    y = torch.randint(0, 4, (3, 8), generator=g)
    masks = [(torch.rand(3, 8, h, generator=g) > 0.3).float() / 0.7 for h in (7, 6)]
    rows = net.batch_source(x.reshape(24, 5)).view(3, 8, 6)
    np.testing.assert_array_equal(rows[..., 5].numpy(), 1.0)
    loss = net.loss_and_grad(rows, y, label_smoothing=0.2, dropout_masks=masks)
    assert net.loss_and_grad(rows, y, label_smoothing=0.2, dropout_masks=masks,
                             need_loss=False) is None
    for k in range(3):
        ps = [p[k].clone().requires_grad_(True) for p in net.params]
        h = x[k]
        for i in range(3):
            h = h @ ps[2 * i] + ps[2 * i + 1]
            if i < 2:
                h = torch.tanh(h) * masks[i][k]
        ref = F.cross_entropy(h, y[k], label_smoothing=0.2)
        ref.backward()
        assert loss[k].item() == pytest.approx(ref.item(), rel=1e-5)
        for p, q in zip(net.params, ps, strict=True):
            np.testing.assert_allclose(p.grad[k].numpy(), q.grad.numpy(), atol=1e-6)


def test_cross_entropy_sum_grad_formula():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    loss, grad = cross_entropy_sum_grad(logits, torch.tensor([[0]]), 0.3)
    p = np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum()
    t = np.array([0.7 + 0.1, 0.1, 0.1])
    assert loss.item() == pytest.approx(float(-(t * np.log(p)).sum()), rel=1e-6)
    np.testing.assert_allclose(grad[0, 0].numpy(), p - t, atol=1e-6)


def test_models_do_not_depend_on_their_chunk(digits):
    """Model 5 trained with 2 others equals model 5 trained alone (own RNG, own number of
    steps, no cross-talk), also when the subsets have very different sizes."""
    X, y = digits
    keep = np.zeros((3, len(X)), dtype=bool)
    keep[0, :900] = True
    keep[1, 300:500] = True  # 200 records: 4 steps per epoch, the others 15 and 9
    keep[2, 1000:1500] = True
    recipe = make_recipe(
        "torch-mlp", hidden_sizes=(16,), epochs=3, batch_size=64, dropout=0.2, lr_schedule="cosine"
    )
    together = recipe.train_chunk(X, y, 10, keep, [4, 5, 6], ("identity",))
    for j, model_id in enumerate([4, 5, 6]):
        alone = recipe.train_chunk(X, y, 10, keep[j : j + 1], [model_id], ("identity",))[0]
        for name, value in together[j].weights.items():
            # Bit for bit (one intra-op thread): nothing in a model's training may depend on
            # the other models — not even which steps compute a loss, which depends on when
            # each model's last epoch starts.
            np.testing.assert_array_equal(value, alone.weights[name])
        assert together[j].final_loss == alone.final_loss
    again = recipe.train_chunk(X, y, 10, keep, [4, 5, 6], ("identity",))
    for a, b in zip(together, again, strict=True):
        assert all(np.array_equal(a.weights[n], b.weights[n]) for n in a.weights)


def test_learning_rate_table():
    cfg = make_recipe(
        "torch-mlp", lr=0.2, epochs=2, lr_schedule="step", lr_step_epochs=1, lr_step_gamma=0.5
    ).config
    rates = learning_rates(cfg, [3, 1]).numpy()
    assert rates.shape == (6, 2)
    np.testing.assert_allclose(rates[:, 0], [0.2, 0.2, 0.2, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(rates[:, 1], [0.2, 0.1, 0, 0, 0, 0])  # 2 steps, then frozen


def test_cnn_grouped_convolution_equals_separate_models():
    gens = model_generators(0, range(3), 0)
    net = StackedCNN((1, 8, 8), (4, 6), (5,), 3, "relu", gens)
    x = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = net.predict(x)
    for k, state in enumerate(net.state_dicts()):
        t = {n: torch.from_numpy(v) for n, v in state.items()}
        h = F.max_pool2d(F.relu(F.conv2d(x, t["conv0.weight"], t["conv0.bias"], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, t["conv1.weight"], t["conv1.bias"], padding=1)), 2)
        h = F.relu(h.flatten(1) @ t["head.linear0.weight"] + t["head.linear0.bias"])
        ref = h @ t["head.linear1.weight"] + t["head.linear1.bias"]
        np.testing.assert_allclose(out[k].numpy(), ref.numpy(), atol=1e-5)


def test_cnn_recipe_learns_digits(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    recipe = make_recipe(
        "torch-cnn",
        channels=(8, 16),
        hidden_sizes=(32,),
        epochs=15,
        batch_size=32,
        lr=0.05,
        augment_crop=1,
    )
    res = recipe.train_chunk(X.reshape(-1, 1, 8, 8), y, 10, keep, [0, 1], ("identity", "mirror"))
    assert res[0].observations.shape == (len(X), 2, 10)
    assert min(r.test_acc for r in res) > 0.7


def test_lr_schedules():
    cfg = make_recipe("torch-mlp", lr_schedule="step", lr_step_epochs=3, lr_step_gamma=0.5).config
    assert LR_SCHEDULES.get("cosine")(cfg, 0, 50, 100) == pytest.approx(0.5)
    assert LR_SCHEDULES.get("cosine")(cfg, 0, 100, 100) == pytest.approx(0.0)
    assert LR_SCHEDULES.get("cosine")(cfg, 0, 0, 100) == 1.0
    assert LR_SCHEDULES.get("step")(cfg, 7, 0, 100) == 0.25
    assert LR_SCHEDULES.get("constant")(cfg, 7, 3, 100) == 1.0


def test_shift_is_reflect_pad_and_crop():
    x = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for dy, dx in [(-2, 1), (0, 0), (1, -1)]:
        ref = padded[:, :, 2 + dy : 2 + dy + 5, 2 + dx : 2 + dx + 4]
        np.testing.assert_array_equal(shift(x, dy, dx, 2).numpy(), ref)
    per_record = shift(x, torch.tensor([-2, 1]), torch.tensor([1, -1]), 2)
    np.testing.assert_array_equal(per_record[0].numpy(), padded[0, :, 0:5, 3:7])
    np.testing.assert_array_equal(per_record[1].numpy(), padded[1, :, 3:8, 1:5])


def test_lira_18_views_in_reference_order():
    x = torch.randn(4, 3, 6, 6)
    views = apply_queries(x, ["lira-18"])
    assert len(views) == QUERIES.get("lira-18").n_views == 18
    np.testing.assert_array_equal(views[4].numpy(), x.numpy())  # (dy, dx) = (0, 0)
    np.testing.assert_array_equal(views[13].numpy(), x.flip(-1).numpy())  # mirror, unshifted
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    np.testing.assert_array_equal(views[0].numpy(), padded[:, :, 0:6, 0:6])  # LiRA dx=dy=0
    assert len(apply_queries(x, ["identity", "mirror", "shifts"])) == 10


def test_identity_view_position():
    assert identity_view(["identity"]) == 0
    assert identity_view(["mirror", "lira-18"]) == 1 + 4
    assert identity_view(["shifts", "identity"]) == 8
    assert identity_view(["mirror", "shifts"]) is None
    x = torch.randn(3, 1, 5, 5)
    views = apply_queries(x, ["mirror", "lira-18"])
    np.testing.assert_array_equal(views[identity_view(["mirror", "lira-18"])].numpy(), x.numpy())


def test_accuracy_uses_the_identity_view_wherever_it_is(digits):
    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    recipe = make_recipe("torch-mlp", hidden_sizes=(16,), epochs=2, batch_size=64)
    images = X.reshape(-1, 1, 8, 8)
    with pytest.raises(
        ValidationError, match=r"keep: expected one row per model, shape \(1, 1797\)"
    ):
        recipe.train_chunk(images, y, 10, keep, [0], ("identity",))
    a = recipe.train_chunk(images, y, 10, keep[:1], [0], ("mirror", "identity"))[0]
    logits = a.observations[:, 1]
    out = ~keep[0]
    assert a.test_acc == pytest.approx(float((logits[out].argmax(1) == y[out]).mean()))


def test_compact_rows_only_when_lossless():
    binary = torch.tensor([[0.0, 1.0], [1.0, 255.0]])
    assert compact_rows(binary).dtype == torch.uint8
    np.testing.assert_array_equal(compact_rows(binary).float().numpy(), binary.numpy())
    for rows in ([[0.0, 0.5]], [[-1.0, 1.0]], [[0.0, 256.0]]):
        t = torch.tensor(rows)
        assert compact_rows(t) is t


def test_byte_rows_train_exactly_like_float_rows(digits, monkeypatch):
    """The digits (integers 0..16) are gathered as bytes; widened back they give the same
    batches, hence bit-identical models."""
    X, y = digits
    keep = keep_matrix(4, len(X), seed=0)[:2]
    recipe = make_recipe("torch-mlp", hidden_sizes=(16,), epochs=2, batch_size=64)
    as_bytes = recipe.train_chunk(X, y, 10, keep, [0, 1], ("identity",))
    monkeypatch.setattr(ensemble, "compact_rows", lambda rows: rows)
    as_floats = recipe.train_chunk(X, y, 10, keep, [0, 1], ("identity",))
    for a, b in zip(as_bytes, as_floats, strict=True):
        assert all(np.array_equal(a.weights[n], b.weights[n]) for n in a.weights)


def test_group_size_from_the_step_flop():
    big = make_recipe("torch-mlp", hidden_sizes=(256,), batch_size=128)
    # 6 · (601·256 + 257·100) · 128 FLOP per model-step → ⌈1e9 / 1.379e8⌉ = 8 models a group
    assert big.group_size((600,), 100, 64) == 8
    assert big.group_size((600,), 100, 5) == 5
    small = make_recipe("torch-mlp", hidden_sizes=(16,), batch_size=64)
    assert small.group_size((64,), 10, 40) == 40


def test_groups_train_like_one_ensemble(digits, monkeypatch):
    """Splitting a chunk into groups of one model changes nothing but the order of work."""
    X, y = digits
    keep = keep_matrix(6, len(X), seed=1)[:3]
    recipe = make_recipe("torch-mlp", hidden_sizes=(16,), epochs=2, batch_size=64, dropout=0.1)
    together = recipe.train_models(X, y, 10, keep, [3, 4, 5])
    monkeypatch.setattr(ensemble, "GROUP_STEP_FLOP", 1.0)
    apart = recipe.train_models(X, y, 10, keep, [3, 4, 5])
    assert len(together) == 1
    assert [g.model_ids for g in apart] == [[3], [4], [5]]
    assert [g.span for g in apart] == [slice(0, 1), slice(1, 2), slice(2, 3)]
    for j, group in enumerate(apart):
        for p_all, p_one in zip(together[0].net.params, group.net.params, strict=True):
            np.testing.assert_allclose(p_all[j].numpy(), p_one[0].numpy(), atol=1e-5)
        assert group.losses[0] == pytest.approx(together[0].losses[j], rel=1e-4)


def test_mlp_storage_first_layer_augmented_deeper_layers_contiguous():
    """The first layer's weight and bias are views of one (K, d + 1, h) tensor (bias last row);
    deeper layers are contiguous tensors of their own; gradients alias likewise."""
    net = StackedMLP(5, (7,), 3, "relu", model_generators(0, range(2), 0))
    first, w1, b1 = net.storage()
    assert first.shape == (2, 6, 7) and w1.shape == (2, 7, 3) and b1.shape == (2, 3)
    assert all(t.is_contiguous() and t.grad.is_contiguous() for t in net.storage())
    states = net.state_dicts()
    states[1]["linear0.bias"] = np.arange(7, dtype=np.float32)
    net.load_state_dicts(states)
    np.testing.assert_array_equal(first[1, 5].numpy(), np.arange(7))
    assert net.params[0].data_ptr() == first.data_ptr()
    assert net.params[0].grad.data_ptr() == first.grad.data_ptr()
    assert net.params[2] is w1 and net.params[3].grad is b1.grad


def test_mlp_on_augmented_images_learns_and_is_augmented(digits):
    """The augmentation path gathers images, flips/crops them, then appends the ones column."""
    X, y = digits
    images = X.reshape(-1, 1, 8, 8)
    keep = keep_matrix(2, len(X), seed=0)[:1]
    plain = make_recipe("torch-mlp", hidden_sizes=(32,), epochs=10, batch_size=32)
    flipped = make_recipe(
        "torch-mlp", hidden_sizes=(32,), epochs=10, batch_size=32, augment_flip=True
    )
    a = plain.train_chunk(images, y, 10, keep, [0], ("identity",))[0]
    b = flipped.train_chunk(images, y, 10, keep, [0], ("identity",))[0]
    assert b.test_acc > 0.7
    assert not np.allclose(a.weights["linear0.weight"], b.weights["linear0.weight"])


def test_logistic_regression_mlp_gradient_matches_autograd():
    """No hidden layer: the only layer takes the ones column and is also the output layer."""
    net = StackedMLP(5, (), 4, "tanh", model_generators(0, range(2), 0))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 5, generator=g)
    y = torch.randint(0, 4, (2, 6), generator=g)
    net.loss_and_grad(net.batch_source(x.reshape(12, 5)).view(2, 6, 6), y,
                      label_smoothing=0.0, dropout_masks=None)
    for k in range(2):
        w = net.params[0][k].clone().requires_grad_(True)
        b = net.params[1][k].clone().requires_grad_(True)
        F.cross_entropy(x[k] @ w + b, y[k]).backward()
        np.testing.assert_allclose(net.params[0].grad[k].numpy(), w.grad.numpy(), atol=1e-6)
        np.testing.assert_allclose(net.params[1].grad[k].numpy(), b.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        net.predict(x[0]).numpy()[0], (x[0] @ net.params[0][0] + net.params[1][0]).numpy(),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("recipe_name", "params", "images"),
    [
        ("torch-mlp", {"hidden_sizes": (16, 8), "dropout": 0.2, "weight_decay": 0.01}, False),
        ("torch-mlp", {"hidden_sizes": (16,), "optimizer": "adam"}, False),
        ("torch-cnn", {"channels": (4,), "hidden_sizes": (8,), "dropout": 0.1,
                       "augment_flip": True, "augment_crop": 1}, True),
    ],
)
def test_training_keeps_every_tensor_on_the_configured_device(
    digits, monkeypatch, recipe_name, params, images
):
    """On the data-less 'meta' device any tensor left on the CPU (an index, a mask, a learning
    rate, a buffer) makes an operation fail with a device mismatch — the error a GPU run would
    meet. Training must get through every step and stop only where the losses are copied back
    to the host (meta tensors have no data to copy), the last line of train_ensemble."""
    X, y = digits
    monkeypatch.setattr(ensemble, "compact_rows", lambda rows: rows)  # reads values
    keep = keep_matrix(4, len(X), seed=0)[:2]
    recipe = make_recipe(recipe_name, epochs=2, batch_size=64, device="meta", **params)
    data = X.reshape(-1, 1, 8, 8) if images else X
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor") as info:
        recipe.train_models(data, y, 10, keep, [0, 1])
    frame = next(f for f in reversed(info.traceback) if f.name == "train_ensemble")
    assert "last_loss.cpu()" in str(frame.statement)


def test_device_is_checked_and_left_out_of_the_config_hash():
    with pytest.raises(ValidationError, match=r"TorchMLPConfig\.device: device 'nowhere' is not "
                                              r"usable here"):
        make_recipe("torch-mlp", device="nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(ValidationError, match=r"device 'cuda' is not usable here"):
            make_recipe("torch-mlp", device="cuda")
    cpu, meta = (make_recipe("torch-cnn", device=d).describe() for d in ("cpu", "meta"))
    assert cpu == meta and "device" not in cpu["config"]


def test_groups_train_side_by_side_on_threads_like_one_after_another(digits, monkeypatch):
    """With 2 torch threads the groups of a chunk train on 2 threads of one intra-op thread
    each; the models equal those trained one group after another, and torch's thread count is
    restored."""
    X, y = digits
    keep = keep_matrix(6, len(X), seed=2)[:3]
    recipe = make_recipe("torch-mlp", hidden_sizes=(16,), epochs=2, batch_size=64, dropout=0.1)
    monkeypatch.setattr(ensemble, "GROUP_STEP_FLOP", 1.0)
    sequential = recipe.train_models(X, y, 10, keep, [0, 1, 2])  # 1 thread (fixture)
    torch.set_num_threads(2)
    side_by_side = recipe.train_models(X, y, 10, keep, [0, 1, 2])
    assert torch.get_num_threads() == 2
    assert [g.model_ids for g in side_by_side] == [[0], [1], [2]]
    for a, b in zip(sequential, side_by_side, strict=True):
        for pa, pb in zip(a.net.params, b.net.params, strict=True):
            np.testing.assert_array_equal(pa.numpy(), pb.numpy())


def test_engine_edge_cases(digits):
    X, y = digits
    recipe = make_recipe("torch-mlp", hidden_sizes=(8,), epochs=1, batch_size=64)
    assert recipe.train_models(X, y, 10, np.zeros((0, len(X)), dtype=bool), []) == []
    keep = keep_matrix(2, len(X), seed=0)[:1]
    (group,) = recipe.train_models(torch.from_numpy(X), torch.from_numpy(y), 10, keep, [0])
    state = group.net.state_dicts()[0]
    state["linear0.weight"][:] = 123.0  # a copy: the live weights do not change
    assert not (group.net.params[0][0] == 123.0).any()
    assert make_recipe("torch-mlp", device="meta").group_size((600,), 100, 64) == 64
    with pytest.raises(ValidationError, match=r"TorchMLPConfig\.betas: expected two numbers"):
        make_recipe("torch-mlp", betas=0.9)


def test_cnn_step_flop_and_group_size():
    """Multiply-adds of the small CNN on 8×8 digits, by hand: conv 8·8·32·1·9 + 4·4·64·32·9,
    head 256·128 + 128·10; times 6·B."""
    cnn = make_recipe("torch-cnn", channels=(32, 64), hidden_sizes=(128,), batch_size=128)
    macs = 8 * 8 * 32 * 9 + 4 * 4 * 64 * 32 * 9 + 256 * 128 + 128 * 10
    assert cnn.step_flop((1, 8, 8), 10) == 6 * 128 * macs
    assert cnn.group_size((1, 8, 8), 10, 8) == 4  # ⌈1e9 / 2.67e8⌉
    assert cnn.group_size((3, 32, 32), 10, 8) == 1  # 4.7 GFLOP a step: one model per group


# ------------------------------------------------------------------------ standardize
def test_folded_standardisation_predicts_like_the_standardised_net():
    """W' = diag(c) W, b' = b - (s ⊙ c) W: raw inputs through the folded layer give the logits
    that standardised inputs give through the original one."""
    gens = model_generators(0, [0, 1, 2], 0)
    net = StackedMLP(5, [7], 3, "tanh", gens)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(50.0, 20.0, (11, 5)).astype(np.float32))
    shift = torch.from_numpy(rng.normal(50.0, 5.0, (3, 5)).astype(np.float32))
    scale = torch.from_numpy(rng.uniform(0.01, 0.1, (3, 5)).astype(np.float32))
    expected = torch.stack(
        [net.predict((x - shift[k]) * scale[k])[k] for k in range(3)]
    )
    net.fold_input_affine(shift, scale)
    assert torch.allclose(net.predict(x), expected, atol=1e-4)


def test_input_scaling_uses_each_models_own_training_records():
    rng = np.random.default_rng(1)
    X = rng.normal([1000.0, 0.1, 5.0], [300.0, 0.02, 0.0], (200, 3)).astype(np.float32)
    keep = rng.random((2, 200)) < 0.5
    scaling = ensemble.InputScaling.fit(torch.from_numpy(X), keep)
    for k in range(2):
        rows = X[keep[k]].astype(np.float64)
        np.testing.assert_allclose(scaling.shift[k].numpy(), rows.mean(0), rtol=1e-5)
        std = rows.std(0)
        np.testing.assert_allclose(scaling.scale[k, :2].numpy(), 1.0 / std[:2], rtol=1e-4)
        assert scaling.scale[k, 2] == 1.0  # a constant feature is shifted, not divided by 0
    assert not torch.equal(scaling.shift[0], scaling.shift[1])


@pytest.mark.parametrize(
    ("choice", "values", "expected"),
    [("auto", "unit", False), ("auto", "raw", True), (True, "unit", True), (False, "raw", False)],
)
def test_standardize_auto_is_on_unless_features_are_unit_scaled(choice, values, expected):
    X = torch.rand(20, 4) if values == "unit" else torch.rand(20, 4) * 100 - 3
    recipe = make_recipe("torch-mlp", standardize=choice)
    assert recipe.standardizes(X) is expected


def test_standardize_is_validated_and_part_of_the_config_hash():
    with pytest.raises(Exception, match="standardize"):
        make_recipe("torch-mlp", standardize="yes")
    a = make_recipe("torch-mlp").describe()
    b = make_recipe("torch-mlp", standardize=False).describe()
    assert a != b


def test_dp_never_standardises_with_private_statistics():
    """A model's own feature means and deviations would reach it without noise, outside the
    accountant's epsilon: ``standardize: true`` with ``dp`` is refused and ``auto`` is off."""
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0}
    with pytest.raises(ValidationError, match="not differentially private"):
        make_recipe("torch-mlp", standardize=True, dp=dp)
    raw = torch.rand(20, 4) * 100
    assert make_recipe("torch-mlp", dp=dp).standardizes(raw) is False
    assert make_recipe("torch-mlp").standardizes(raw) is True


def test_training_bar_moves_per_epoch_while_a_group_trains(digits):
    """The bar counts model-epochs as the loop finishes them (not only when models return);
    a model's result then adds only the epochs not yet counted."""
    from miaudit._progress import TrainingProgress

    X, y = digits
    keep = keep_matrix(2, len(X), seed=0)
    recipe = make_recipe("torch-mlp", hidden_sizes=(8,), epochs=3)
    seen = []

    class Spy(TrainingProgress):
        def _on_epoch(self, model_ids):
            super()._on_epoch(model_ids)
            seen.append(self.completed)

    with Spy(2, recipe.progress_epochs(), "training", quiet=True) as bar:
        recipe.train_models(X, y, 10, keep, [0, 1])
        assert seen == [2, 4, 6]
        bar.model_done(0)
        bar.model_done(1)
    assert bar.completed == 6 == bar.total


def test_training_bars_that_overlap_without_nesting():
    """Bar A opens, bar B opens, A closes first (two audits on two threads): reports then go
    to B, and once B closes to nobody; a closed bar never counts again."""
    from miaudit._progress import TrainingProgress, report_epoch

    a = TrainingProgress(1, 5, "a", quiet=True).__enter__()
    b = TrainingProgress(1, 5, "b", quiet=True).__enter__()
    report_epoch([0])
    a.__exit__(None, None, None)
    report_epoch([0])
    assert (a.completed, b.completed) == (0, 2)
    b.__exit__(None, None, None)
    report_epoch([0])
    assert (a.completed, b.completed) == (0, 2)


# ------------------------------------------------------------------------ early stopping
def _purchase_small():
    from miaudit.data import load_dataset

    ds = load_dataset("purchase-like", n_records=1000, n_classes=20)
    return torch.from_numpy(ds.X), torch.from_numpy(ds.y)


#: Adam on a small purchase-like set over-fits within ~8 epochs.
EARLY = {"epochs": 100, "early_stopping": 3, "optimizer": "adam", "lr": 0.003}


def test_early_stopping_keeps_each_models_best_epoch():
    """Each model stops long before 100 epochs, gets its best epoch's weights back (its
    validation loss is the lowest it reached at the end of its own epochs), and validates on
    OUT records only."""
    X, y = _purchase_small()
    keep = keep_matrix(3, len(X), seed=0)
    recipe = make_recipe("torch-mlp", **EARLY)
    net = recipe.build((X.shape[1],), 20, [0, 1, 2])
    stopping = ensemble.EarlyStopping(X, y, keep, recipe.config, [0, 1, 2])
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original_loss, original_end = stopping.validation_loss, stopping.epoch_end

    def spy(net, scaling, ended):
        seen.append((original_loss(net, scaling), ended & stopping.active))
        return original_end(net, scaling, ended)

    stopping.epoch_end = spy  # type: ignore[method-assign]
    train_ensemble(
        net, X, y, keep, recipe.config, model_generators(0, [0, 1, 2], ORDER_STREAM),
        model_generators(0, [0, 1, 2], NOISE_STREAM), stopping=stopping,
    )
    assert not stopping.active.any()
    assert int(stopping.epochs_done.max()) < 30
    for k in range(3):
        own = torch.stack([loss[k] for loss, ended in seen if ended[k]])
        assert own.shape[0] == stopping.epochs_done[k]
        assert int(stopping.best_epoch[k]) == int(own.argmin()) + 1
        np.testing.assert_allclose(
            float(original_loss(net, None)[k]), float(own.min()), rtol=1e-5
        )
    chosen = (stopping.weight > 0).numpy()
    assert chosen.sum(axis=1).tolist() == [round(0.2 * (~row).sum()) for row in keep]
    assert not (chosen & keep[:, stopping.records]).any()


def test_early_stopping_does_not_depend_on_the_group():
    """A model stops on its own epochs and its own validation loss: trained with two others
    it ends with the weights (and reported loss) it has trained alone."""
    X, y = _purchase_small()
    keep = keep_matrix(3, len(X), seed=1)
    keep[1, :40] = False  # another subset size: other epoch boundaries
    recipe = make_recipe("torch-mlp", **EARLY)
    together = recipe.train_chunk(X.numpy(), y.numpy(), 20, keep, [0, 1, 2], ("identity",))
    for j in range(3):
        alone = recipe.train_chunk(
            X.numpy(), y.numpy(), 20, keep[j : j + 1], [j], ("identity",)
        )[0]
        for name, value in together[j].weights.items():
            np.testing.assert_allclose(value, alone.weights[name], atol=1e-5)
        assert together[j].final_loss == pytest.approx(alone.final_loss, rel=1e-5)


def test_early_stopping_without_validation_records_trains_every_epoch():
    """A model with no OUT records has nothing to validate on: it trains all its epochs and
    reports its last epoch's loss, beside models that stop early; a group in which no model
    has validation records trains as without early stopping."""
    X, y = _purchase_small()
    keep = keep_matrix(3, len(X), seed=0)
    keep[1] = True
    recipe = make_recipe("torch-mlp", **{**EARLY, "epochs": 12})
    res = recipe.train_chunk(X.numpy(), y.numpy(), 20, keep, [0, 1, 2], ("identity",))
    plain = make_recipe("torch-mlp", **{**EARLY, "epochs": 12, "early_stopping": 0})
    full = plain.train_chunk(X.numpy(), y.numpy(), 20, keep[1:2], [1], ("identity",))[0]
    for name, value in res[1].weights.items():
        np.testing.assert_allclose(value, full.weights[name], atol=1e-5)
    assert res[1].final_loss == pytest.approx(full.final_loss, rel=1e-5) and res[1].final_loss > 0
    everything = np.ones((2, len(X)), dtype=bool)
    alone = recipe.train_chunk(X.numpy(), y.numpy(), 20, everything, [0, 1], ("identity",))
    assert all(r.final_loss > 0 for r in alone)


def test_early_stopping_config():
    with pytest.raises(ValidationError, match="early stopping with DP-SGD"):
        make_recipe("torch-mlp", early_stopping=2, dp={"noise_multiplier": 1.0})
    with pytest.raises(ValidationError, match="validation_fraction"):
        make_recipe("torch-mlp", early_stopping=2, validation_fraction=1.0)
    off = make_recipe("torch-mlp").describe()["config"]
    assert "early_stopping" not in off and "validation_fraction" not in off
    on = make_recipe("torch-mlp", early_stopping=2).describe()["config"]
    assert on["early_stopping"] == 2 and on["validation_fraction"] == 0.2


def test_input_scaling_treats_a_feature_constant_over_a_models_records_as_constant():
    """A rare one-hot column that a model never sees set: its deviation over that model's
    records is 0 exactly, not float rounding turned into a scale of ~1e9."""
    rng = np.random.default_rng(0)
    X = rng.random((1000, 3)).astype(np.float32)
    X[:, 2] = 0.3
    X[:3, 2] = 1.3  # set on three records only
    keep = np.ones((2, 1000), bool)
    keep[0, :3] = False  # model 0 never trains on them
    scaling = ensemble.InputScaling.fit(torch.from_numpy(X), keep)
    assert scaling.scale[0, 2] == 1.0
    assert scaling.shift[0, 2] == pytest.approx(0.3)
    assert 10 < float(scaling.scale[1, 2]) < 20  # model 1 sees the variation: 1 / 0.0547
