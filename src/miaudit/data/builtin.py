"""Built-in datasets: scikit-learn's digits and synthetic stand-ins for Purchase-100 / Texas-100.

Nothing is downloaded and nothing is cached on disk: ``digits`` ships with scikit-learn, and the
``*-like`` datasets are generated from a seed in a few seconds.

Purchase-100 and Texas-100 (Shokri et al., "Membership Inference Attacks Against Machine
Learning Models", S&P 2017) are binary feature vectors — items bought by a shopper (600), or
attributes and procedures of a hospital stay (6,170) — with 100 classes. Purchase-100's classes
are the clusters of a k-means clustering of the records; the classes of the synthetic stand-ins
here are made the same way (for Texas-100 the real classes are the patient's main procedure; a
k-means class is likewise a deterministic but non-trivial function of the features).

The records come from a latent *admixture* (the mixed-membership model of topic models):

1. ``n_profiles`` latent profiles ("shopper interests", "patient types"); profile ``k`` puts a
   ``Dirichlet(1, ..., 1)`` distribution :math:`q_k` over ``profile_size`` random features and
   zero on the others.
2. Record ``i`` mixes the profiles with weights :math:`\\theta_i \\sim \\mathrm{Dirichlet}(\\alpha)`
   (``mixing`` = :math:`\\alpha`; small values mean one or two dominant profiles) and draws a
   "basket" of exactly ``basket_size`` distinct features from

   .. math:: p_i = (1 - \\eta)\\, \\theta_i^\\top Q + \\eta / d

   without replacement (exponential race), where :math:`\\eta` = ``noise`` is the share of the
   basket that is uniform noise and :math:`d` = ``n_features``. Feature ``j`` of the record is 1 iff
   ``j`` is in the basket.
3. Labels: k-means (scikit-learn ``KMeans``, Lloyd, k-means++ initialisation, seeded) of the
   records into ``n_classes`` clusters.

Why an admixture and fixed-size baskets: with a plain mixture of well separated profiles k-means
groups whole profiles, the class boundaries fall in empty space and an MLP reaches about 0.9 test
accuracy (nothing to leak); with independent Bernoulli features, records with few ones collapse
into one huge cluster. A continuum of mixed records cut by k-means gives boundaries through
dense regions, balanced classes and the over-fitting of the real data (see ``docs/data.md`` for
the measured train/test accuracy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from miaudit._validation import (
    SeedLike,
    as_generator,
    check_count,
    check_positive,
    check_probability,
)
from miaudit.data.base import Dataset
from miaudit.data.registry import register_dataset
from miaudit.exceptions import ValidationError

DIGITS_MAX_INTENSITY = 16.0
"""Pixel values of scikit-learn's digits are integers 0..16; dividing by this maps to [0, 1]."""

GENERATION_CHUNK = 4096
"""Records generated per block, bounding the ``(chunk, n_features)`` temporary arrays."""

KMEANS_MAX_ITER = 50
"""Lloyd iterations of the k-means labelling (converges well before this on these data)."""


@register_dataset("digits")
def load_digits(flat: bool = False) -> Dataset:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 records, 10 classes).

    Parameters
    ----------
    flat : bool
        If True, ``X`` has shape ``(1797, 64)``; otherwise images ``(1797, 1, 8, 8)``.

    Returns
    -------
    Dataset
        ``X`` float32 in [0, 1] (pixel / 16), ``y`` the digit, ids ``"digits-0000"`` …
        ``"digits-1796"`` in the order of ``sklearn.datasets.load_digits``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / DIGITS_MAX_INTENSITY
    n = images.shape[0]
    X = images.reshape(n, -1) if flat else images[:, None, :, :]
    ids = np.array([f"digits-{i:04d}" for i in range(n)])
    return Dataset(
        X=X,
        y=np.asarray(bunch.target, dtype=np.int64),
        record_ids=ids,
        n_classes=10,
        name="digits",
        meta={"source": "sklearn.datasets.load_digits", "flat": bool(flat)},
    )


@dataclass(frozen=True)
class LatentMixtureSpec:
    """Parameters of the latent-admixture generator (see the module docstring).

    Attributes
    ----------
    n_records : int
        Number of records ``n >= n_classes``.
    n_features : int
        Number of binary features ``d``.
    n_classes : int
        Number of k-means clusters = classes ``C >= 2``.
    n_profiles : int
        Number of latent profiles ``K``.
    profile_size : int
        Features with non-zero probability in each profile, ``<= d``.
    basket_size : int
        Ones per record, ``< d``.
    mixing : float
        Dirichlet concentration :math:`\\alpha > 0` of each record's profile weights.
    noise : float
        Share :math:`\\eta \\in [0, 1]` of the basket distribution that is uniform.
    """

    n_records: int
    n_features: int
    n_classes: int
    n_profiles: int
    profile_size: int
    basket_size: int
    mixing: float
    noise: float

    def __post_init__(self) -> None:
        n_classes = check_count(self.n_classes, "n_classes", 2)
        check_count(self.n_records, "n_records", n_classes)
        d = check_count(self.n_features, "n_features", 2)
        check_count(self.n_profiles, "n_profiles", 1)
        if check_count(self.profile_size, "profile_size", 1) > d:
            raise ValidationError(f"profile_size: {self.profile_size} exceeds n_features={d}")
        if check_count(self.basket_size, "basket_size", 1) >= d:
            raise ValidationError(
                f"basket_size: {self.basket_size} must be smaller than n_features={d}"
            )
        check_positive(self.mixing, "mixing")
        check_probability(self.noise, "noise", open_interval=False)


def profile_matrix(spec: LatentMixtureSpec, rng: np.random.Generator) -> NDArray[np.float64]:
    """Profile distributions ``Q`` of shape ``(n_profiles, n_features)``; rows sum to 1.

    Row ``k`` is ``Dirichlet(1, ..., 1)`` on ``profile_size`` features chosen uniformly without
    replacement, zero elsewhere.
    """
    k, d, s = spec.n_profiles, spec.n_features, spec.profile_size
    support = np.argsort(rng.random((k, d)), axis=1)[:, :s]
    q = np.zeros((k, d))
    np.put_along_axis(q, support, rng.dirichlet(np.ones(s), size=k), axis=1)
    return q


def sample_baskets(
    spec: LatentMixtureSpec, profiles: NDArray[np.float64], rng: np.random.Generator
) -> NDArray[np.float32]:
    """Binary records ``X`` of shape ``(n_records, n_features)``, exactly ``basket_size`` ones each.

    Record ``i`` draws ``θ_i ~ Dirichlet(mixing)`` and then ``basket_size`` distinct features
    from ``p_i = (1 - noise) θ_i Q + noise / d`` without replacement, by the exponential race
    (equivalent to Gumbel top-k): the features with the ``m`` smallest ``E_ij / p_ij``,
    ``E_ij ~ Exp(1)``, are a sample without replacement with probabilities proportional to
    ``p_i`` (Efraimidis & Spirakis, "Weighted random sampling with a reservoir", 2006).
    """
    n, d, m = spec.n_records, spec.n_features, spec.basket_size
    X = np.zeros((n, d), dtype=np.float32)
    q = profiles.astype(np.float32)
    for start in range(0, n, GENERATION_CHUNK):
        stop = min(start + GENERATION_CHUNK, n)
        theta = rng.dirichlet(np.full(spec.n_profiles, spec.mixing), size=stop - start)
        p = (1.0 - spec.noise) * (theta.astype(np.float32) @ q) + np.float32(spec.noise / d)
        with np.errstate(divide="ignore"):
            keys = rng.standard_exponential(size=p.shape, dtype=np.float32) / p
        top = np.argpartition(keys, m - 1, axis=1)[:, :m]
        np.put_along_axis(X[start:stop], top, 1.0, axis=1)
    return X


def kmeans_labels(
    X: NDArray[np.float32], n_classes: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """k-means cluster of each record: ``KMeans(n_classes, n_init=1)`` on sparse ``X``.

    The sparse (CSR) code path of scikit-learn's Lloyd iterations gives the same labels for any
    number of threads (checked in the tests), so a seed fixes the labels.
    """
    from sklearn.cluster import KMeans

    km = KMeans(
        n_clusters=n_classes,
        n_init=1,
        max_iter=KMEANS_MAX_ITER,
        random_state=int(rng.integers(np.iinfo(np.int32).max)),
    )
    return km.fit_predict(sp.csr_matrix(X)).astype(np.int64)


def make_latent_mixture(spec: LatentMixtureSpec, seed: SeedLike, name: str) -> Dataset:
    """Generate the dataset of ``spec``: records from the admixture, labels from k-means.

    Ids are ``f"{name}-{i:06d}"``; ``meta`` holds the spec and the seed.
    """
    rng = as_generator(seed)
    X = sample_baskets(spec, profile_matrix(spec, rng), rng)
    y = kmeans_labels(X, spec.n_classes, rng)
    ids = np.array([f"{name}-{i:06d}" for i in range(spec.n_records)])
    meta = {"generator": "latent admixture + k-means", **asdict(spec)}
    if not isinstance(seed, np.random.Generator):
        meta["seed"] = int(seed)
    return Dataset(X=X, y=y, record_ids=ids, n_classes=spec.n_classes, name=name, meta=meta)


@register_dataset("purchase-like")
def purchase_like(
    n_records: int = 20_000,
    n_features: int = 600,
    n_classes: int = 100,
    seed: SeedLike = 0,
    n_profiles: int = 50,
    profile_size: int = 60,
    basket_size: int = 30,
    mixing: float = 0.25,
    noise: float = 0.2,
) -> Dataset:
    """Synthetic stand-in for Purchase-100: 600 binary features, 100 k-means classes.

    Generated by :func:`make_latent_mixture`; the defaults are calibrated so that a
    600→256→100 tanh MLP reaches 100% train and about 0.69 test accuracy on 10,000 training
    records (Shokri et al. report 0.66 on the real data). See :class:`LatentMixtureSpec` for the
    knobs: more ``noise`` or ``mixing`` lowers test accuracy, fewer ``n_profiles`` raises it.
    """
    spec = LatentMixtureSpec(
        n_records, n_features, n_classes, n_profiles, profile_size, basket_size, mixing, noise
    )
    return make_latent_mixture(spec, seed, "purchase-like")


@register_dataset("texas-like")
def texas_like(
    n_records: int = 10_000,
    n_features: int = 6_170,
    n_classes: int = 100,
    seed: SeedLike = 0,
    n_profiles: int = 50,
    profile_size: int = 150,
    basket_size: int = 60,
    mixing: float = 0.2,
    noise: float = 0.1,
) -> Dataset:
    """Synthetic stand-in for Texas-100: 6,170 binary features, 100 k-means classes.

    Generated by :func:`make_latent_mixture`. The default size is 10,000 records (the real
    data set has 67,330) to keep generation to a few seconds and ``X`` to 250 MB.
    """
    spec = LatentMixtureSpec(
        n_records, n_features, n_classes, n_profiles, profile_size, basket_size, mixing, noise
    )
    return make_latent_mixture(spec, seed, "texas-like")
