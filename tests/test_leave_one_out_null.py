"""A leave-one-out audit of models that learned nothing must find nothing.

In a leave-one-out audit over a balanced keep matrix, a record the target trained on has one IN
reference fewer (and one OUT reference more) than a record it did not train on. Statistics
fitted to different sample sizes then differ in distribution and, without equalised counts,
online LiRA with per-record variance scored members far from chance on null models (AUC 0.67,
TPR 21.7% at 1% FPR with 3 references). Here every signal is independent of membership.
"""

import numpy as np
import pytest

from miaudit import attacks
from miaudit.attacks import AttackData
from miaudit.attacks._reference_stats import equal_count_masks
from miaudit.data.splits import LeaveOneOut, keep_matrix
from miaudit.metrics import auc

N_RECORDS = 3000
#: With 3000 records per target and 4 targets pooled, a chance AUC lies within ±0.02 of 0.5.
TOLERANCE = 0.02


def _pooled_auc(name: str, n_models: int, **params) -> float:
    rng = np.random.default_rng(7)
    keep = keep_matrix(n_models, N_RECORDS, seed=3)
    # Null model: each model's signal on each record is noise around a record difficulty.
    difficulty = rng.normal(size=N_RECORDS)
    signals = difficulty + rng.normal(size=(n_models, N_RECORDS)) * rng.uniform(
        0.5, 2.0, size=N_RECORDS)
    scores, truth = [], []
    for t, refs in list(LeaveOneOut(keep))[:4]:
        data = AttackData.from_signals(
            np.zeros(N_RECORDS, dtype=np.int64),
            {"logit_scaled_confidence": {"target": signals[t], "references": signals[refs]},
             "cross_entropy_loss": {"target": -signals[t], "references": -signals[refs]}},
            keep=keep[refs],
        )
        scores.append(attacks.create(name, **params).score(data))
        truth.append(keep[t])
    return auc(np.concatenate(scores), np.concatenate(truth))


@pytest.mark.parametrize("n_models", [4, 5, 9])
@pytest.mark.parametrize(
    ("name", "params"),
    [("lira", {"variance": "per_record"}), ("lira", {"variance": "global"}),
     ("lira", {"center": "mean", "variance": "per_record"}),
     ("lira_offline", {"variance": "per_record"}), ("attack_r", {})],
)
def test_null_models_give_chance_auc(name, params, n_models):
    assert abs(_pooled_auc(name, n_models, **params) - 0.5) < TOLERANCE


def test_without_equalised_counts_online_lira_is_biased():
    # The test above can fail: the same null audit without equalisation is far from chance.
    biased = _pooled_auc("lira", 4, variance="per_record", equalize=False)
    assert abs(biased - 0.5) > 3 * TOLERANCE


def test_equal_count_masks():
    keep = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=bool)
    in_mask, out_mask = equal_count_masks(keep)
    # IN counts 3, 3, 3 → all kept; OUT counts 2, 2, 2 → all kept.
    np.testing.assert_array_equal(in_mask, keep)
    np.testing.assert_array_equal(out_mask, ~keep)
    keep2 = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=bool)  # IN 3 and 2; OUT 1 and 2
    in2, out2 = equal_count_masks(keep2)
    np.testing.assert_array_equal(in2.sum(axis=0), [2, 2])
    np.testing.assert_array_equal(out2.sum(axis=0), [1, 1])
    np.testing.assert_array_equal(in2[:, 0], [True, True, False, False])  # first ones kept
    np.testing.assert_array_equal(out2[:, 1], [True, False, False, False])
