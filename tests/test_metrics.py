"""The metrics recorded for every backtest, from Freqtrade's statistics."""

import pytest

from tradai_core.metrics import cagr, metrics_of

# Freqtrade 2026.9's statistics of the sample backtest (SampleStrategy, 10 pairs, 0.2 BTC wallet).
SAMPLE_STATS = {"starting_balance": 0.2, "final_balance": 0.16244558, "profit_total_abs": 0.01240546,
                "profit_total": 0.0620273, "backtest_days": 19, "cagr": -0.9815980016862207, "total_trades": 102}


def test_cagr_follows_the_trades_profit_not_freqtrades_final_wallet():
    metrics = metrics_of(SAMPLE_STATS)
    assert metrics["cagr"] == pytest.approx(1.0620273 ** (365 / 19) - 1)
    assert metrics["profit_total_abs"] == 0.01240546 and metrics["trades"] == 102
    losing = metrics_of({**SAMPLE_STATS, "profit_total_abs": -0.02})
    assert losing["cagr"] == pytest.approx(0.9 ** (365 / 19) - 1) and losing["cagr"] < 0


def test_cagr_is_zero_where_it_is_undefined_and_freqtrades_stands_without_the_inputs():
    assert cagr(0, 0.2, 0.3) == 0.0 and cagr(10, 0.0, 0.3) == 0.0 and cagr(10, 0.2, -0.1) == 0.0
    assert metrics_of({"cagr": 0.5, "total_trades": 3}) == {"cagr": 0.5, "trades": 3.0}
