r"""Label-only membership inference: Choquette-Choo, Tramèr, Carlini & Papernot, "Label-Only
Membership Inference Attacks", ICML 2021.

The attacker sees only the label the target predicts. Three attacks, each scoring higher for
members:

Gap attack
    :math:`s(x, y) = 1[\hat y(x) = y]`. Its balanced accuracy is
    :math:`\tfrac12 + \tfrac12(\mathrm{acc}_{train} - \mathrm{acc}_{test})` (Yeom et al., CSF 2018).
    Registered as ``correctness`` already (:mod:`miaudit.attacks`); :func:`gap_scores` queries a
    target directly.

Augmentation attack
    Query the record and ``q - 1`` perturbed copies: flips and one-pixel shifts for images
    (:mod:`miaudit.train.queries`), Gaussian noise :math:`x + \sigma\xi`, :math:`\xi\sim N(0,I)`
    for tabular data; a member tends to stay correctly classified. The score is the fraction of
    correct views, minus a per-class threshold :math:`t_y` fitted on reference (shadow) models
    (the threshold maximising balanced accuracy between their IN and OUT records of class
    ``y``): :math:`s = \tfrac1q \sum_j 1[\hat y(a_j(x)) = y] - t_y`. The noise scale can be
    chosen on the references (:func:`choose_noise_scale`), never on the audited labels.

Boundary-distance attack
    The L2 distance from the record to the target's decision boundary, found with a
    HopSkipJump-style search (Chen, Jordan & Wainwright, S&P 2020) that needs only labels;
    misclassified records have distance 0. Members lie farther from the boundary. See
    :func:`boundary_distance` for the search and its query budget.

Query access vs. arrays
    The gap and augmentation attacks also work on outputs computed once
    (:class:`~miaudit.attacks.AttackData` with ``q`` views, one-hot rows are enough) and are
    registered: ``label_only_augmentation``. The boundary search needs live queries, so it runs
    on a target (:func:`boundary_distance`); its distances enter an ``AttackData`` as the
    precomputed signal ``"boundary_distance"`` (``set_signal``), which the registered
    ``label_only_boundary`` attack reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from miaudit._validation import SeedLike, as_generator, check_array, check_count, check_keep
from miaudit.attacks import register
from miaudit.attacks.base import Attack, AttackData, AttackInfo
from miaudit.attacks.threshold import best_threshold
from miaudit.exceptions import MissingRequirementError, UnknownNameError, ValidationError
from miaudit.targets import predict_labels

__all__ = [
    "BOUNDARY_SIGNAL",
    "DEFAULT_BUDGET",
    "BoundaryResult",
    "LabelOnlyAugmentationAttack",
    "LabelOnlyBoundaryAttack",
    "augmentation_correctness",
    "augmentation_scores",
    "augmented_views",
    "boundary_distance",
    "choose_noise_scale",
    "class_threshold_scores",
    "gap_scores",
]

PAPER = (
    "Choquette-Choo, Tramèr, Carlini, Papernot. Label-Only Membership Inference Attacks. ICML 2021"
)
#: Name of the precomputed boundary-distance signal in an AttackData.
BOUNDARY_SIGNAL = "boundary_distance"
#: Noisy copies per record of the tabular augmentation attack (plus the record itself).
DEFAULT_N_NOISE = 30
#: Default standard deviation of the tabular augmentation noise, in feature units.
DEFAULT_SIGMA = 0.5
#: Image views of the augmentation attack: the image, its mirror and 8 one-pixel shifts.
IMAGE_QUERIES = ("identity", "mirror", "shifts")

#: Default queries per record of the boundary search.
DEFAULT_BUDGET = 200
#: Random directions per gradient estimate of the boundary search (HopSkipJump's B).
DEFAULT_DIRECTIONS = 16
#: Candidates per iteration: HopSkipJump's step and ``DEFAULT_STEPS - 1`` points on the ray.
DEFAULT_STEPS = 2
#: Ratio of consecutive distances tried along the estimated normal from the record.
RAY_SHRINK = 0.8
#: Bisection steps of each projection onto the boundary.
DEFAULT_BISECTIONS = 8
#: Probe radius of the gradient estimate, as a fraction of ``distance / sqrt(d)``.
PROBE_SCALE = 1.0
#: Rows per call to the target during the boundary search (bounds memory).
QUERY_CHUNK = 32_768
#: Entries of each block of the record × pool distance matrix (starting points).
DISTANCE_CHUNK = 1 << 22


# ---------------------------------------------------------------------------- gap attack
def gap_scores(target: Any, X: NDArray, y: ArrayLike) -> NDArray[np.float64]:
    """Gap attack: 1.0 where the target predicts the true label, else 0.0; shape ``(n,)``."""
    labels = np.asarray(y, dtype=np.int64)
    return (predict_labels(target, X) == labels).astype(np.float64)


# ---------------------------------------------------------------------- augmentation attack
def augmented_views(
    X: NDArray,
    *,
    n_noise: int = DEFAULT_N_NOISE,
    sigma: float = DEFAULT_SIGMA,
    seed: SeedLike = 0,
) -> NDArray[np.float64]:
    r"""The ``q`` views of every record the augmentation attack queries.

    Parameters
    ----------
    X : array of shape (n, c, H, W) or (n, d)
        Images (channels first) or tabular records.
    n_noise : int
        Tabular data: noisy copies :math:`x + \sigma\xi_j`, :math:`j < n`, after the record.
    sigma : float
        Tabular data: noise standard deviation.
    seed : int or Generator
        Tabular data: the noise. Use the same seed for the target and its reference models,
        so that all see the same views.

    Returns
    -------
    ndarray of shape (q, n, *X.shape[1:])
        Images: the image, its mirror and its 8 one-pixel shifts (``q = 10``). Tabular:
        the record and its noisy copies (``q = 1 + n_noise``).
    """
    arr = check_array(X, "X", min_ndim=2)
    if arr.ndim == 4:
        import torch

        from miaudit.train.queries import apply_queries

        views = apply_queries(torch.as_tensor(arr), IMAGE_QUERIES)
        return np.stack([v.numpy() for v in views])
    n_noise = check_count(n_noise, "n_noise", 0)
    sigma = float(sigma)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValidationError(f"sigma: expected a non-negative number, got {sigma!r}")
    rng = as_generator(seed)
    noise = rng.standard_normal((n_noise, *arr.shape))
    return np.concatenate([arr[None], arr[None] + sigma * noise])


def augmentation_correctness(target: Any, views: NDArray, y: ArrayLike) -> NDArray[np.bool_]:
    """Whether the target labels each view correctly: shape ``(n, q)`` from views ``(q, n, ...)``.

    All views go to the target in one call (``q * n`` queries).
    """
    q, n = views.shape[:2]
    labels = np.asarray(y, dtype=np.int64)
    if labels.shape != (n,):
        raise ValidationError(f"y: expected shape ({n},) to match the views, got {labels.shape}")
    pred = predict_labels(target, views.reshape(q * n, *views.shape[2:])).reshape(q, n)
    return (pred == labels[None]).T


def class_threshold_scores(
    target_signal: ArrayLike,
    labels: ArrayLike,
    reference_signal: ArrayLike | None = None,
    keep: ArrayLike | None = None,
) -> NDArray[np.float64]:
    r"""Score :math:`s_i - t_{y_i}` with per-class thresholds fitted on reference models.

    Parameters
    ----------
    target_signal : array of shape (n,)
        Higher = member (fraction of correct views, boundary distance).
    labels : array of shape (n,)
    reference_signal : array of shape (m, n), optional
        The same signal of ``m`` reference models on the same records.
    keep : array of shape (m, n), bool
        Which reference trained on which record.

    Returns
    -------
    ndarray of shape (n,)
        ``target_signal`` itself without references; else minus :math:`t_y`, the threshold that
        maximises the balanced accuracy of "member iff signal >= t" between the references' IN
        and OUT values of class ``y`` (all classes pooled where a class lacks IN or OUT values).
    """
    tgt = check_array(target_signal, "target_signal", ndim=1)
    lab = np.asarray(labels, dtype=np.int64)
    if reference_signal is None:
        return tgt.copy()
    ref = check_array(reference_signal, "reference_signal", ndim=2)
    if ref.shape[1] != tgt.shape[0]:
        raise ValidationError(
            f"reference_signal: expected shape (m, {tgt.shape[0]}), got {ref.shape}"
        )
    if keep is None:
        raise MissingRequirementError("keep: needed with reference_signal (IN/OUT labels)")
    kp = check_keep(keep, shape=ref.shape)
    lab2 = np.broadcast_to(lab, ref.shape)
    overall = best_threshold(ref[kp], ref[~kp])
    if not np.isfinite(overall):
        raise MissingRequirementError(
            "per-class thresholds need reference models with both IN and OUT records"
        )
    thresholds = np.full(int(lab.max(initial=0)) + 1, overall)
    for c in np.unique(lab):
        sel = lab2 == c
        t = best_threshold(ref[sel & kp], ref[sel & ~kp])
        if np.isfinite(t):
            thresholds[c] = t
    return tgt - thresholds[lab]


def augmentation_scores(
    target: Any,
    X: NDArray,
    y: ArrayLike,
    *,
    references: Sequence[Any] = (),
    keep: ArrayLike | None = None,
    n_noise: int = DEFAULT_N_NOISE,
    sigma: float = DEFAULT_SIGMA,
    seed: SeedLike = 0,
) -> NDArray[np.float64]:
    """Augmentation attack against a queryable target; shape ``(n,)``, higher = member.

    Parameters
    ----------
    target : Target
    X, y : arrays of shape (n, ...) and (n,)
    references : sequence of Target
        Reference (shadow) models, for the per-class thresholds; none: the plain fraction.
    keep : array of shape (len(references), n), bool
    n_noise, sigma, seed
        See :func:`augmented_views` (the same views go to every model).

    Returns
    -------
    ndarray of shape (n,)
        See :func:`class_threshold_scores`.
    """
    views = augmented_views(X, n_noise=n_noise, sigma=sigma, seed=seed)
    frac = augmentation_correctness(target, views, y).mean(axis=1)
    if not references:
        return frac
    ref = np.stack([augmentation_correctness(r, views, y).mean(axis=1) for r in references])
    return class_threshold_scores(frac, y, ref, keep)


def choose_noise_scale(
    references: Sequence[Any],
    keep: ArrayLike,
    X: NDArray,
    y: ArrayLike,
    candidates: Sequence[float],
    *,
    n_noise: int = DEFAULT_N_NOISE,
    seed: SeedLike = 0,
) -> float:
    """The noise scale whose augmentation attack separates the references' IN and OUT records
    best (mean balanced accuracy, each reference attacked with the others as its references).

    Uses reference models only, never the target's membership labels.
    """
    from miaudit.metrics import balanced_accuracy

    kp = check_keep(keep, shape=(len(references), len(X)))
    if len(references) < 2:
        raise MissingRequirementError("choose_noise_scale: needs at least 2 reference models")
    best, best_sigma = -np.inf, float(candidates[0])
    for sigma in candidates:
        views = augmented_views(X, n_noise=n_noise, sigma=sigma, seed=seed)
        frac = np.stack([augmentation_correctness(r, views, y).mean(axis=1) for r in references])
        accs = []
        for i in range(len(references)):
            others = np.arange(len(references)) != i
            s = class_threshold_scores(frac[i], y, frac[others], kp[others])
            accs.append(balanced_accuracy(s, kp[i]))
        if np.mean(accs) > best:
            best, best_sigma = float(np.mean(accs)), float(sigma)
    return best_sigma


# ------------------------------------------------------------------ boundary-distance attack
@dataclass(frozen=True)
class BoundaryResult:
    """Distances to the decision boundary and the queries spent on each record.

    Attributes
    ----------
    distance : ndarray of shape (n,)
        L2 distance from each record to the closest point found with a different label
        (0 for misclassified records); higher = member.
    queries : ndarray of shape (n,), int64
        Queries spent on each record, ``<= budget``.
    """

    distance: NDArray[np.float64]
    queries: NDArray[np.int64]

    def signal(self) -> NDArray[np.float64]:
        """The distances as a signal array ``(n, 1)`` for :meth:`AttackData.set_signal`."""
        return self.distance[:, None]


def _labels(target: Any, rows: NDArray) -> NDArray[np.int64]:
    """Predicted labels of many rows, in chunks of :data:`QUERY_CHUNK`."""
    if len(rows) <= QUERY_CHUNK:
        return predict_labels(target, rows)
    return np.concatenate(
        [
            predict_labels(target, rows[s : s + QUERY_CHUNK])
            for s in range(0, len(rows), QUERY_CHUNK)
        ]
    )


def _bisect(
    query: Callable[[NDArray[np.float64]], NDArray[np.int64]],
    x: NDArray[np.float64],
    adv: NDArray[np.float64],
    y: NDArray[np.int64],
    steps: int,
) -> NDArray[np.float64]:
    """Points on the segments ``x -> adv`` within ``2**-steps`` of the boundary, on its
    adversarial side (``adv`` is adversarial, ``x`` is not); ``steps`` queries per record."""
    lo = np.zeros(len(x))
    hi = np.ones(len(x))
    diff = adv - x
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        is_adv = query(x + mid[:, None] * diff) != y
        hi = np.where(is_adv, mid, hi)
        lo = np.where(is_adv, lo, mid)
    return x + hi[:, None] * diff


def _starting_points(
    X: NDArray[np.float64],
    pred: NDArray[np.int64],
    y: NDArray[np.int64],
    active: NDArray[np.int64],
    pool: NDArray[np.float64],
    pool_pred: NDArray[np.int64],
) -> NDArray[np.float64]:
    """For each active record, the nearest pool record the target labels differently."""
    sq_pool = (pool**2).sum(axis=1)
    starts = np.empty((active.size, X.shape[1]))
    chunk = max(1, DISTANCE_CHUNK // max(1, len(pool)))
    for s in range(0, active.size, chunk):
        idx = active[s : s + chunk]
        d2 = sq_pool[None, :] - 2.0 * X[idx] @ pool.T
        d2[pool_pred[None, :] == y[idx, None]] = np.inf
        starts[s : s + chunk] = pool[d2.argmin(axis=1)]
    return starts


def boundary_distance(
    target: Any,
    X: NDArray,
    y: ArrayLike,
    *,
    budget: int = DEFAULT_BUDGET,
    seed: SeedLike = 0,
    n_directions: int = DEFAULT_DIRECTIONS,
    n_steps: int = DEFAULT_STEPS,
    n_bisections: int = DEFAULT_BISECTIONS,
    pool: NDArray | None = None,
    clip: tuple[float, float] | None = None,
) -> BoundaryResult:
    r"""L2 distance of every record to the target's decision boundary, from labels only.

    A HopSkipJump-style search (Chen, Jordan & Wainwright, S&P 2020), run in lock-step over all
    records so that each step is one batched call to the target:

    1. Query the record (1 query); a misclassified record has distance 0 and stops.
    2. Start from the nearest record of ``pool`` (default: ``X``) that the target labels
       differently from ``y`` (no query: the pool's labels are known from step 1, or cost one
       query per pool record), and bisect the segment to the boundary (``n_bisections``).
    3. Repeat while the budget allows (``n_directions + n_steps + n_bisections`` queries each):
       estimate the boundary normal at the boundary point :math:`b` from ``B = n_directions``
       random unit directions :math:`u_j`, probed at :math:`b + \delta u_j` with
       :math:`\delta = \|b - x\| / \sqrt d`:
       :math:`\hat g = \frac1B \sum_j (\phi_j - \bar\phi) u_j`,
       :math:`\phi_j = \pm 1` (adversarial or not). Then query, in one call, HopSkipJump's
       step :math:`b + \epsilon \hat g/\|\hat g\|`, :math:`\epsilon = \|b - x\|\,t^{-1/2}`,
       and ``n_steps - 1`` points on the ray from the record along the normal,
       :math:`x + r\rho^k \hat g/\|\hat g\|`, :math:`r = \|b - x\|`, :math:`\rho` =
       :data:`RAY_SHRINK` (for a flat boundary and an exact normal the ray meets it at the true
       distance); bisect from :math:`x` to the shortest adversarial ray point, else to the HSJ
       step. The distance is the smallest :math:`\|b - x\|_2` seen.

    Parameters
    ----------
    target : Target
        Only its labels are used (:func:`miaudit.targets.predict_labels`).
    X : array of shape (n, ...)
        Records; the distance is taken in the flattened feature space.
    y : array of shape (n,)
        True labels.
    budget : int
        Most queries per record; a record never gets more. At least
        ``1 + n_bisections`` (start and first projection) for correctly classified records.
    seed : int or Generator
        Random directions. The same seed, budget and target give the same distances.
    n_directions, n_steps, n_bisections : int
        See above.
    pool : array of shape (p, ...), optional
        Starting points (e.g. population records); default ``X`` itself. A pool other than
        ``X`` costs one query per pool record, not charged to the audited records.
    clip : (float, float), optional
        Keep probes in this box (the data domain, e.g. ``(0, 1)`` for pixels).

    Returns
    -------
    BoundaryResult
        ``distance`` and ``queries`` per record.

    Raises
    ------
    ValidationError
        If the budget cannot pay for one projection, or no pool record is labelled
        differently from a record that needs a starting point.
    """
    x = check_array(X, "X", min_ndim=2)
    shape = x.shape
    n = shape[0]
    x = x.reshape(n, -1)
    d = x.shape[1]
    labels = np.asarray(y, dtype=np.int64)
    if labels.shape != (n,):
        raise ValidationError(f"y: expected shape ({n},) to match X, got {labels.shape}")
    budget = check_count(budget, "budget", 1)
    n_directions = check_count(n_directions, "n_directions", 1)
    n_steps = check_count(n_steps, "n_steps", 2)
    n_bisections = check_count(n_bisections, "n_bisections", 1)
    rng = as_generator(seed)

    def query(rows: NDArray[np.float64]) -> NDArray[np.int64]:
        if clip is not None:
            rows = np.clip(rows, clip[0], clip[1])
        return _labels(target, rows.reshape(len(rows), *shape[1:]))

    pred = query(x)
    queries = np.ones(n, dtype=np.int64)
    distance = np.zeros(n)
    active = np.flatnonzero(pred == labels)
    if active.size == 0:
        return BoundaryResult(distance, queries)
    if budget < 1 + n_bisections:
        raise ValidationError(
            f"budget: {budget} queries per record cannot pay for the start and one projection "
            f"(1 + n_bisections = {1 + n_bisections})"
        )
    if pool is None:
        pool_x, pool_pred = x, pred
    else:
        pool_x = check_array(pool, "pool", min_ndim=2).reshape(len(pool), -1)
        if pool_x.shape[1] != d:
            raise ValidationError(f"pool: records of {pool_x.shape[1]} features, X has {d}")
        pool_pred = query(pool_x)
    lacking = np.setdiff1d(np.unique(labels[active]), np.unique(pool_pred))
    if np.unique(pool_pred).size < 2 or lacking.size == np.unique(labels[active]).size:
        raise ValidationError(
            "pool: the target gives (almost) every pool record the same label, so there is no "
            "starting point on the other side of the boundary; pass a more varied pool"
        )
    starts = _starting_points(x, pred, labels, active, pool_x, pool_pred)
    xa, ya = x[active], labels[active]
    boundary = _bisect(query, xa, starts, ya, n_bisections)
    best = np.linalg.norm(boundary - xa, axis=1)
    spent = 1 + n_bisections
    per_iteration = n_directions + n_steps + n_bisections
    ray_scales = RAY_SHRINK ** np.arange(n_steps - 1)
    iteration = 0
    while spent + per_iteration <= budget:
        iteration += 1
        m = len(xa)
        dist = np.linalg.norm(boundary - xa, axis=1)
        delta = PROBE_SCALE * dist / np.sqrt(d)
        # probe directions in float32, the precision the target is queried in (torch models);
        # distances, steps and the boundary points stay float64
        u = rng.standard_normal((m, n_directions, d), dtype=np.float32)
        u /= np.linalg.norm(u, axis=2, keepdims=True)
        probes = (
            boundary.astype(np.float32)[:, None, :] + delta.astype(np.float32)[:, None, None] * u
        )
        phi = np.where(
            query(probes.reshape(m * n_directions, d)).reshape(m, -1) != ya[:, None], 1.0, -1.0
        )
        centred = phi - phi.mean(axis=1, keepdims=True)
        centred = np.where(np.all(centred == 0, axis=1, keepdims=True), phi, centred)
        grad = np.einsum("mb,mbd->md", centred.astype(np.float32), u).astype(np.float64)
        grad /= np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), np.finfo(float).tiny)
        # candidates: HopSkipJump's step from the boundary point, and points on the ray from x
        # along the estimated normal at distances r * RAY_SHRINK**k (for a flat boundary and an
        # exact normal the ray crosses at the true distance)
        eps = dist / np.sqrt(iteration)
        hsj = boundary + eps[:, None] * grad
        ray = xa[:, None, :] + (dist[:, None] * ray_scales[None, :])[:, :, None] * grad[:, None]
        cand = np.concatenate([hsj[:, None, :], ray], axis=1)
        cand_adv = query(cand.reshape(m * n_steps, d)).reshape(m, n_steps) != ya[:, None]
        # the last (shortest) adversarial ray point, else the HSJ step, else stay
        ray_adv = cand_adv[:, 1:]
        last_ray = n_steps - 1 - ray_adv[:, ::-1].argmax(axis=1)
        pick = np.where(ray_adv.any(axis=1), last_ray, np.where(cand_adv[:, 0], 0, -1))
        moved = pick >= 0
        new_start = np.where(moved[:, None], cand[np.arange(m), np.maximum(pick, 0)], boundary)
        projected = _bisect(query, xa, new_start, ya, n_bisections)
        new_dist = np.linalg.norm(projected - xa, axis=1)
        better = moved & (new_dist < dist)
        boundary = np.where(better[:, None], projected, boundary)
        best = np.minimum(best, np.where(better, new_dist, best))
        spent += per_iteration
    distance[active] = best
    queries[active] = spent
    return BoundaryResult(distance, queries)


# ------------------------------------------------------------------------ registered attacks
@register("label_only_augmentation")
class LabelOnlyAugmentationAttack(Attack):
    """Augmentation attack on outputs of ``q`` views per record (one-hot rows suffice): the
    fraction of views the target labels correctly, minus a per-class threshold fitted on the
    reference models when ``class_thresholds`` and references are given. See
    :func:`class_threshold_scores`."""

    info = AttackInfo(
        name="label_only_augmentation",
        title="Label-only augmentation: correct labels under flips/shifts or noise, per-class "
        "thresholds from references",
        paper=PAPER,
        needs_outputs=True,
        needs_capabilities=("label",),
    )

    def __init__(self, class_thresholds: bool = True) -> None:
        self.class_thresholds = bool(class_thresholds)

    def _fraction(self, data: AttackData, part: str) -> NDArray[np.float64]:
        outputs = data.outputs(part)  # type: ignore[arg-type]
        correct = outputs.argmax(axis=-1) == np.asarray(data.labels)[:, None]
        return correct.mean(axis=-1)

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        frac = self._fraction(data, "target")
        if not self.class_thresholds or data.references is None or data.keep is None:
            return frac
        return class_threshold_scores(
            frac, data.labels, self._fraction(data, "references"), data.keep
        )


@register("label_only_boundary")
class LabelOnlyBoundaryAttack(Attack):
    """Boundary-distance attack on precomputed distances (:func:`boundary_distance`), given as
    the signal ``"boundary_distance"`` of the target (and optionally of the references, for
    per-class thresholds)."""

    info = AttackInfo(
        name="label_only_boundary",
        title="Label-only boundary distance: L2 distance to the decision boundary "
        "(HopSkipJump-style)",
        paper=PAPER,
        needs_capabilities=("label",),
        needs_queries=True,
    )

    def __init__(
        self, class_thresholds: bool = True, budget: int = DEFAULT_BUDGET, seed: int = 0
    ) -> None:
        self.class_thresholds = bool(class_thresholds)
        self.budget = check_count(budget, "budget", 1)
        self.seed = check_count(seed, "seed")

    def query_signals(self, target: Any, X: NDArray, y: NDArray) -> dict[str, NDArray[np.float64]]:
        """The boundary distance of every record (:func:`boundary_distance` with this attack's
        ``budget`` and ``seed``), shape (n, 1); the queries spent are kept in ``last_queries``."""
        result = boundary_distance(target, X, y, budget=self.budget, seed=self.seed)
        self._last_queries = result.queries
        return {BOUNDARY_SIGNAL: result.signal()}

    @staticmethod
    def _distance(data: AttackData, part: str) -> NDArray[np.float64]:
        try:
            return data.signal(BOUNDARY_SIGNAL, part).mean(axis=-1)  # type: ignore[arg-type]
        except (UnknownNameError, MissingRequirementError, KeyError):
            raise MissingRequirementError(
                f"attack 'label_only_boundary' needs the precomputed signal {BOUNDARY_SIGNAL!r} "
                f"of the {part}: it queries a live target. Compute it with "
                "miaudit.attacks.label_only.boundary_distance(target, X, y).signal() and pass "
                f"it with data.set_signal({BOUNDARY_SIGNAL!r}, {part!r}, ...)"
            ) from None

    def _score(self, data: AttackData) -> NDArray[np.float64]:
        dist = self._distance(data, "target")
        if (
            not self.class_thresholds
            or data.keep is None
            or not data.has_signal(BOUNDARY_SIGNAL, "references")
        ):
            # No reference distances (e.g. the references of a model audit are not live
            # models): the raw distance, thresholded globally.
            return dist
        return class_threshold_scores(
            dist, data.labels, self._distance(data, "references"), data.keep
        )
