"""Fixed-seed statistical comparisons of attack power on a synthetic membership model.

Generator (one call = one population of models on the same records): record difficulty
``mu_j ~ N(0, 2^2)``; per-record vulnerability ``delta_j ~ LogNormal(-1, 1)`` (non-negative,
heavy-tailed: a few records move a lot when trained on); every model's logit-scaled confidence is
``mu_j + delta_j * IN + sigma_j * eps`` with ``sigma_j = 0.3 + 0.3 * max(mu_j, 0)``: confident
records are noisier, so one variance for all records is misspecified. The true-class probability
(RMIA's signal) is the sigmoid of that signal. Model 0 is the target, models ``1..m`` the
references (balanced: every record IN for half of them), and ``z`` population records are OUT for
every model.

What theory says, and what is tested:

* Online LiRA, which calibrates each record by its own IN and OUT references, beats the LOSS
  attack (one global threshold on the target's signal), whose ranking is dominated by the record
  difficulty ``mu_j``.
* More reference models do not make LiRA worse: with 64 the per-record variances capture the
  heteroscedastic noise that the global variance (used with 8) cannot.
* With only 2 references (complementary halves, one IN and one OUT per record), RMIA beats
  offline LiRA: offline LiRA has one OUT sample per record and no usable variance estimate, while
  RMIA's probability ratio needs no variance and compresses the noisy confident records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import expit

from miaudit.attacks.lira import lira_scores
from miaudit.attacks.rmia import rmia_scores
from miaudit.metrics import auc, tpr_at_fpr

N_RECORDS = 10_000
N_POPULATION = 5_000
FPR = 0.01
SEED = 0


@dataclass
class World:
    target: NDArray[np.float64]  # (n, 1) logit-scaled confidence of the target model
    is_member: NDArray[np.bool_]  # (n,) target's membership
    reference: NDArray[np.float64]  # (m, n, 1)
    keep: NDArray[np.bool_]  # (m, n)
    population_target: NDArray[np.float64]  # (z, 1)
    population_reference: NDArray[np.float64]  # (m, z, 1)


def simulate(m: int, seed: int = SEED) -> World:
    rng = np.random.default_rng(seed)
    total = N_RECORDS + N_POPULATION
    mu = rng.normal(0.0, 2.0, total)
    delta = rng.lognormal(-1.0, 1.0, total)
    sigma = 0.3 + 0.3 * np.maximum(mu, 0.0)
    keep = np.zeros((m + 1, total), dtype=bool)
    keep[0] = rng.random(total) < 0.5
    keep[1:] = rng.random((m, total)).argsort(axis=0) < m // 2  # each record IN for m/2
    keep[:, N_RECORDS:] = False
    signal = mu + delta * keep + sigma * rng.normal(size=(m + 1, total))
    rec, pop = signal[:, :N_RECORDS, None], signal[:, N_RECORDS:, None]
    return World(rec[0], keep[0, :N_RECORDS], rec[1:], keep[1:, :N_RECORDS], pop[0], pop[1:])


def tpr(scores: NDArray[np.float64], world: World) -> float:
    return tpr_at_fpr(scores, world.is_member, FPR).tpr


def lira(world: World, online: bool = True) -> NDArray[np.float64]:
    return lira_scores(world.target, world.reference, world.keep, online=online, variance="auto")


def rmia(world: World, online: bool = True) -> NDArray[np.float64]:
    return rmia_scores(
        expit(world.target),
        expit(world.reference),
        world.keep,
        expit(world.population_target),
        expit(world.population_reference),
        online=online,
    )


@pytest.fixture(scope="module")
def worlds() -> dict[int, World]:
    return {m: simulate(m) for m in (8, 64)}


def test_online_lira_beats_loss(worlds):
    for m in (8, 64):
        world = worlds[m]
        loss_tpr = tpr(world.target[:, 0], world)  # global threshold on the target's signal
        lira_tpr = tpr(lira(world), world)
        assert lira_tpr > 2 * loss_tpr, (m, lira_tpr, loss_tpr)
        assert auc(lira(world), world.is_member) > auc(world.target[:, 0], world.is_member)


def test_more_references_do_not_make_lira_worse(worlds):
    few, many = tpr(lira(worlds[8]), worlds[8]), tpr(lira(worlds[64]), worlds[64])
    assert many >= few, (many, few)
    assert auc(lira(worlds[64]), worlds[64].is_member) >= auc(lira(worlds[8]), worlds[8].is_member)


@pytest.mark.parametrize("online", [True, False], ids=["rmia_online", "rmia_offline"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rmia_with_two_references_beats_offline_lira(online, seed):
    world = simulate(2, seed)
    assert (world.keep.sum(axis=0) == 1).all()  # one IN and one OUT reference per record
    rmia_tpr, lira_tpr = tpr(rmia(world, online), world), tpr(lira(world, online=False), world)
    assert rmia_tpr > lira_tpr, (rmia_tpr, lira_tpr)
