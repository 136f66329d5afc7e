"""Per-record vulnerability and the headline, against brute-force computations."""

import numpy as np

from miaudit.audit.result import (
    best_attack,
    choose_headline_fpr,
    headline,
    per_record_vulnerability,
)
from miaudit.metrics import summarize


def test_vulnerability_matches_brute_force():
    rng = np.random.default_rng(0)
    t, n, fpr = 6, 300, 0.05
    member = rng.random((t, n)) < 0.5
    scores = rng.normal(size=(t, n)) + 3.0 * member * (np.arange(n) < 30)
    df = per_record_vulnerability(scores, member, [f"r{i}" for i in range(n)],
                                  np.arange(n) % 3, fpr)
    # Brute force: per target, the lowest threshold among scores with FPR <= fpr.
    flagged = np.zeros_like(member)
    for k in range(t):
        best = np.inf
        for thr in np.unique(scores[k]):
            pred = scores[k] >= thr
            if (pred & ~member[k]).sum() / (~member[k]).sum() <= fpr:
                best = min(best, thr)
        flagged[k] = scores[k] >= best
    for j in (0, 5, 29, 100, 299):
        row = df.loc[f"r{j}"]
        assert row["n_in"] == member[:, j].sum()
        assert row["n_flagged"] == (flagged[:, j] & member[:, j]).sum()
        assert row["n_false_flags"] == (flagged[:, j] & ~member[:, j]).sum()
        assert row["label"] == j % 3
    # The vulnerable records (first 30) dominate the top of the ranking.
    top = [int(i[1:]) for i in df.index[:20]]
    assert np.mean(np.array(top) < 30) > 0.7


def test_headline_names_best_attack_and_resolution():
    rng = np.random.default_rng(1)
    member = np.arange(2000) < 1000
    strong = rng.normal(size=2000) + 3 * member
    weak = rng.normal(size=2000) + 0.2 * member
    sums = {"weak": summarize(weak, member, fprs=(1e-2, 1e-3, 1e-4)),
            "strong": summarize(strong, member, fprs=(1e-2, 1e-3, 1e-4))}
    f = choose_headline_fpr(sums)
    assert f == 1e-3  # reachable with 1000 non-members
    assert best_attack(sums, f) == "strong"
    text = headline(sums["strong"], "strong", f)
    r = sums["strong"].at(1e-3)
    assert text.startswith("At 0.1% false positives, the best attack (strong) identifies "
                           f"{100 * r.tpr:.1f}%")
    small = summarize(strong[900:1100], member[900:1100], fprs=(1e-3,))  # 100 non-members
    assert "zero false positives" in headline(small, "strong", 1e-3)
    assert choose_headline_fpr({"s": small}) == 1e-3  # none reachable: largest reported
