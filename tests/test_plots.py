"""Score histograms: bins over robust quantiles, tails counted in the edge bins (report.plots)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from miaudit.report.plots import HIST_CLIP_QUANTILES, clipped_bin_edges, plot_score_histograms


def test_clipped_bin_edges_span_the_quantiles_and_count_the_tails():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(size=1000), -60.0, 400.0]  # two outliers far out
    edges, n_outside = clipped_bin_edges(values, 20)
    lo, hi = np.quantile(values, HIST_CLIP_QUANTILES)
    np.testing.assert_allclose(edges, np.linspace(lo, hi, 21))
    assert n_outside == sum(1 for v in values if v < lo or v > hi)
    assert 2 <= n_outside <= 12  # the outliers plus about 0.5% of 1,002 on each side
    # Clipped to the edges, every value is counted; unclipped, the tails would be lost.
    assert np.histogram(np.clip(values, lo, hi), edges)[0].sum() == values.size
    assert np.histogram(values, edges)[0].sum() == values.size - n_outside


def test_clipped_bin_edges_fall_back_to_the_full_range_when_the_quantiles_tie():
    values = np.r_[np.zeros(500), 1.0, 2.0]
    edges, n_outside = clipped_bin_edges(values, 4)
    np.testing.assert_allclose(edges, [0.0, 0.5, 1.0, 1.5, 2.0])
    assert n_outside == 0


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. a legend with nothing to show
def test_histograms_with_outliers_and_an_all_nan_attack_write_a_png(tmp_path):
    rng = np.random.default_rng(1)
    member = rng.random(400) < 0.5
    loss = -rng.exponential(0.3, 400) * np.where(member, 0.5, 1.0)
    loss[:2] = -60.0
    scores = {"loss": loss, "nan": np.full(400, np.nan)}
    path = plot_score_histograms(scores, member, tmp_path / "hist.png")
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100
