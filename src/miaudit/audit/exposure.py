"""What the most exposed records have in common: labels, distance to their neighbours, images.

Records that membership attacks find are typically outliers (far from every other record),
members of rare classes, or mislabelled. :func:`profile_exposure` compares the ``k`` most
exposed records (the top of :attr:`~miaudit.audit.result.AuditResult.vulnerability`) with all
audited records on two cheap statistics:

* the **label distribution**: the fraction of each class among the top records and among all;
* the **nearest-neighbour distance**: the Euclidean distance from a record to the closest other
  audited record, :math:`d(x) = \\min_{x' \\ne x} \\lVert x - x' \\rVert_2` on the flattened
  features, for the top records and for a sample of at most :data:`NN_SAMPLE` records
  (:math:`O((k + s) \\cdot n \\cdot d)` time, in blocks of :data:`NN_BLOCK` rows).

For 8×8 single-channel images (scikit-learn's digits) the top records' pixels are kept so the
report can draw them.

>>> import numpy as np, pandas as pd
>>> vuln = pd.DataFrame({"label": [1, 0, 0, 0]}, index=pd.Index(["d", "a", "b", "c"]))
>>> X = np.array([[0.0], [0.1], [0.2], [5.0]])
>>> p = profile_exposure(vuln, np.array(["a", "b", "c", "d"]), X, np.array([0, 0, 0, 1]), top_k=1)
>>> p["top_nn_distance_median"], p["label_share_top"]
(4.8, {'1': 1.0})
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

__all__ = ["IMAGE_SIDE", "NN_BLOCK", "NN_SAMPLE", "nearest_neighbour_distance", "profile_exposure"]

#: Records sampled for the typical nearest-neighbour distance.
NN_SAMPLE = 500
#: Rows of the distance matrix computed at once.
NN_BLOCK = 256
#: Side of the images drawn in the report (8×8: scikit-learn's digits).
IMAGE_SIDE = 8


def nearest_neighbour_distance(
    X: NDArray[np.floating], rows: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Euclidean distance from each ``X[rows[i]]`` to its nearest other row of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    rows : ndarray of int of shape (k,)

    Returns
    -------
    ndarray of shape (k,)
        ``inf`` when ``X`` has a single row.
    """
    Xf = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    sq = np.einsum("ij,ij->i", Xf, Xf)
    out = np.empty(len(rows))
    for start in range(0, len(rows), NN_BLOCK):
        r = rows[start : start + NN_BLOCK]
        d2 = sq[r, None] + sq[None, :] - 2.0 * Xf[r] @ Xf.T
        d2[np.arange(len(r)), r] = np.inf
        out[start : start + NN_BLOCK] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _shares(labels: NDArray) -> dict[str, float]:
    s = pd.Series(labels).value_counts(normalize=True).sort_index()
    return {str(k): round(float(v), 4) for k, v in s.items()}


def profile_exposure(
    vulnerability: pd.DataFrame,
    record_ids: NDArray,
    features: NDArray[np.floating] | None,
    labels: NDArray | None,
    *,
    top_k: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Label shares, nearest-neighbour distances and (8×8 data) images of the top records.

    Parameters
    ----------
    vulnerability : pandas.DataFrame
        Per-record exposure, most exposed first, indexed by record id.
    record_ids : ndarray of shape (n,)
        Ids of the rows of ``features`` and ``labels``.
    features : ndarray of shape (n, ...), optional
    labels : ndarray of shape (n,), optional
    top_k : int
        How many of the most exposed records to profile.
    seed : int
        Seed of the sample of records for the typical nearest-neighbour distance.

    Returns
    -------
    dict
        ``top_ids``; ``label_share_top`` and ``label_share_all`` (class → fraction);
        ``top_nn_distance`` (per top record), ``top_nn_distance_median``,
        ``all_nn_distance_median``; ``images`` (list of 8×8 lists) for 64-feature data.
        Keys whose inputs are missing are left out.
    """
    ids = np.asarray(record_ids)
    pos = pd.Series(np.arange(ids.size), index=pd.Index(ids))
    top_ids = [i for i in vulnerability.index[:top_k] if i in pos.index]
    if not top_ids:
        return {}
    rows = pos.loc[top_ids].to_numpy(np.int64)
    out: dict[str, Any] = {"top_ids": [str(i) for i in top_ids]}
    if labels is not None:
        lab = np.asarray(labels)
        out["label_share_top"] = _shares(lab[rows])
        out["label_share_all"] = _shares(lab)
    if features is not None and len(features) > 1:
        X = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        top_d = nearest_neighbour_distance(X, rows)
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(X), size=min(NN_SAMPLE, len(X)), replace=False)
        all_d = nearest_neighbour_distance(X, np.sort(sample))
        out["top_nn_distance"] = [round(float(d), 4) for d in top_d]
        out["top_nn_distance_median"] = round(float(np.median(top_d)), 4)
        out["all_nn_distance_median"] = round(float(np.median(all_d)), 4)
        if X.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
            out["images"] = X[rows].reshape(-1, IMAGE_SIDE, IMAGE_SIDE).tolist()
    return out
