"""PSI: reference bins fixed on the training window, known values by hand, bands, bad input."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from tradai_core import drift
from tradai_core.drift import DriftInputError, ReferenceBins, band, drift_report, psi, psi_of_shares, reference_bins

EPS = 1e-4


def test_edges_are_numpys_linear_deciles_and_shares_sum_to_one():
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"a": rng.normal(size=10_001), "b": rng.exponential(size=10_001)})
    bins = reference_bins(training)
    for name in ("a", "b"):
        np.testing.assert_allclose(bins.features[name].edges, np.quantile(training[name], np.linspace(0.1, 0.9, 9)))
        shares = bins.features[name].shares
        assert len(shares) == 19 and shares.sum() == pytest.approx(1.0)
        # Intervals hold the deciles; the point bins at the edges hold (next to) nothing.
        np.testing.assert_allclose(shares[0::2], 0.1, atol=2e-4)
        assert shares[1::2].max() <= 1 / 10_001


def test_psi_of_a_small_case_by_hand():
    training = pd.DataFrame({"x": np.arange(1.0, 11.0)})  # edges 1.9, 2.8, ..., 9.1: one value per interval
    bins = reference_bins(training)
    np.testing.assert_allclose(bins.features["x"].edges, [1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])
    current = pd.DataFrame({"x": [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    # (-inf, 1.9) goes from 0.1 to 0.5; four intervals keep 0.1; the top four intervals empty (-> 1e-4);
    # the empty point bins are 1e-4 on both sides and add nothing.
    expected = (0.5 - 0.1) * math.log(0.5 / 0.1) + 4 * (EPS - 0.1) * math.log(EPS / 0.1)
    assert psi(bins, current)["x"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.40411, abs=1e-5)


def test_constant_feature_sees_a_move_either_way():
    bins = reference_bins(pd.DataFrame({"flag": np.full(1_000, 5.0)}))
    assert bins.features["flag"].edges.tolist() == [5.0]
    assert bins.features["flag"].shares.tolist() == [0.0, 1.0, 0.0]
    current = pd.DataFrame({"flag": [4.0, 5.0, 5.0, 6.0]})
    expected = 2 * (0.25 - EPS) * math.log(0.25 / EPS) + (0.5 - 1.0) * math.log(0.5 / 1.0)
    assert psi(bins, current)["flag"] == pytest.approx(expected, rel=1e-12)
    assert psi(bins, pd.DataFrame({"flag": [5.0] * 7}))["flag"] == 0.0


def test_tied_values_keep_their_own_bin():
    rng = np.random.default_rng(2)
    # Half the rows exactly zero (a clipped feature): the zero mass sits in the point bin at 0.
    values = np.where(rng.uniform(size=20_000) < 0.5, 0.0, rng.exponential(size=20_000))
    bins = reference_bins(pd.DataFrame({"clipped": values})).features["clipped"]
    assert bins.edges[0] == 0.0
    assert bins.shares[1] == pytest.approx((values == 0).mean())
    assert bins.shares[0] == 0.0  # nothing below zero in training
    # More zeros in the recent window is a change in the distribution.
    more_zeros = np.where(rng.uniform(size=20_000) < 0.8, 0.0, rng.exponential(size=20_000))
    assert psi(ReferenceBins({"clipped": bins}, 20_000), pd.DataFrame({"clipped": more_zeros}))["clipped"] > 0.25


def test_values_outside_the_training_range_fall_in_the_open_outer_bins():
    bins = reference_bins(pd.DataFrame({"x": np.linspace(0.0, 1.0, 1_001)}))
    above = psi(bins, pd.DataFrame({"x": np.full(100, 50.0)}))["x"]
    below = psi(bins, pd.DataFrame({"x": np.full(100, -50.0)}))["x"]
    assert above == pytest.approx(below) and above > 0.25


def test_stationary_features_are_fine_and_shifted_ones_warn_or_drift():
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(20)]
    training = pd.DataFrame({name: rng.normal(size=100_000) for name in names} | {"prediction": rng.uniform(size=100_000)})
    bins = reference_bins(training)

    stationary = pd.DataFrame({name: rng.normal(size=20_000) for name in names} | {"prediction": rng.uniform(size=20_000)})
    report = drift_report(bins, stationary)
    assert report.worst_band == "fine"
    assert report.table["psi"].max() < 0.01

    shifted = stationary.copy()
    shifted["f3"] += 1.0  # one standard deviation: PSI about 0.95
    shifted["f7"] += 0.4  # PSI about 0.16
    shifted["prediction"] = rng.uniform(size=20_000) ** 2  # the model's outputs pile up near zero
    report = drift_report(bins, shifted)
    assert report.worst_band == "drift"
    assert set(report.features_in("drift")) == {"f3", "prediction"}
    assert report.features_in("warning") == ["f7"]
    assert report.table.index[0] in {"f3", "prediction"}  # worst first
    assert set(report.features_in("fine")) == set(names) - {"f3", "f7"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, "fine"), (0.0999, "fine"), (0.1, "warning"), (0.2499, "warning"), (0.25, "drift"), (3.0, "drift")],
)
def test_bands(value, expected):
    assert band(value) == expected


def test_band_refuses_what_is_not_a_psi():
    for value in (float("nan"), -0.1, float("inf")):
        with pytest.raises(DriftInputError, match="finite non-negative"):
            band(value)


def test_psi_of_identical_shares_is_zero_and_empty_bins_use_epsilon():
    assert psi_of_shares([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0
    assert psi_of_shares([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - EPS) * math.log(1 / EPS))
    assert drift.EPSILON == EPS


def test_reference_bins_survive_json():
    rng = np.random.default_rng(4)
    training = pd.DataFrame({"a": rng.normal(size=5_000), "flag": np.ones(5_000)})
    bins = reference_bins(training)
    restored = ReferenceBins.from_dict(json.loads(json.dumps(bins.to_dict())))
    assert restored.rows == 5_000
    current = pd.DataFrame({"a": rng.normal(size=1_000) + 0.3, "flag": np.zeros(1_000)})
    pd.testing.assert_series_equal(psi(restored, current), psi(bins, current))


def test_malformed_stored_bins_are_refused():
    with pytest.raises(DriftInputError, match="'a' are malformed"):
        ReferenceBins.from_dict({"rows": 10, "features": {"a": {"edges": [1.0, 2.0], "shares": [0.5, 0.5]}}})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_naming_the_feature(bad):
    rng = np.random.default_rng(5)
    training = pd.DataFrame({"good": rng.normal(size=100), "rsi_14": rng.normal(size=100)})
    bins = reference_bins(training)
    broken = training.copy()
    broken.loc[[3, 50], "rsi_14"] = bad
    with pytest.raises(DriftInputError, match=r"current window has NaN or infinite values in feature\(s\) \{'rsi_14': 2\}"):
        psi(bins, broken)
    with pytest.raises(DriftInputError, match=r"training window .* \{'rsi_14': 2\}"):
        reference_bins(broken)


def test_missing_non_numeric_and_empty_windows_are_refused():
    bins = reference_bins(pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)}))
    with pytest.raises(DriftInputError, match=r"current window lacks feature\(s\) \['b'\]"):
        psi(bins, pd.DataFrame({"a": [1.0]}))
    with pytest.raises(DriftInputError, match=r"feature\(s\) \['b'\] are not numeric"):
        psi(bins, pd.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(DriftInputError, match="current window has no rows"):
        psi(bins, pd.DataFrame({"a": [], "b": []}, dtype="float64"))
