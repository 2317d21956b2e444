"""Walk-forward windows, grids, stitching and stability on hand-made numbers."""

import pandas as pd
import pytest

from tradai_core.walk_forward import (
    GridSearch,
    WalkForwardError,
    WalkForwardSpec,
    Window,
    WindowOutcome,
    best_trial,
    expand_grid,
    parameter_stability,
    run_walk_forward,
    stitch_equity,
    stitch_trades,
    summarise,
    windows,
)

FIRST = pd.Timestamp("2018-01-10 00:00", tz="UTC")
END = pd.Timestamp("2018-01-20 00:00", tz="UTC")  # the last 5m candle opens at 23:55 on the 19th


def spans(found: list[Window]) -> list[tuple[str, str]]:
    return [(w.train_timerange, w.test_timerange) for w in found]


def test_rolling_windows_slide_the_train_span_by_the_step_which_defaults_to_the_test_span():
    found = windows(WalkForwardSpec.parse("4d", "2d"), FIRST, END)
    assert spans(found) == [
        ("20180110-20180114", "20180114-20180116"),
        ("20180112-20180116", "20180116-20180118"),
        ("20180114-20180118", "20180118-20180120"),
    ]
    assert [w.index for w in found] == [0, 1, 2]
    assert {(w.train_days, w.test_days) for w in found} == {(4, 2)}


def test_anchored_windows_keep_the_start_and_grow_the_train_span():
    found = windows(WalkForwardSpec.parse("4d", "2d", mode="anchored"), FIRST, END)
    assert spans(found) == [
        ("20180110-20180114", "20180114-20180116"),
        ("20180110-20180116", "20180116-20180118"),
        ("20180110-20180118", "20180118-20180120"),
    ]
    assert [w.train_days for w in found] == [4, 6, 8]


def test_a_longer_step_leaves_gaps_and_the_windows_use_only_whole_days_of_data():
    # Candles from 10 Jan 06:00 to 20 Jan 12:00: the whole days are 11 Jan to 20 Jan.
    found = windows(
        WalkForwardSpec.parse("2d", "1d", step="3d"), FIRST + pd.Timedelta(hours=6), END + pd.Timedelta(hours=12)
    )
    assert spans(found) == [
        ("20180111-20180113", "20180113-20180114"),
        ("20180114-20180116", "20180116-20180117"),
        ("20180117-20180119", "20180119-20180120"),
    ]


def test_a_window_that_fills_the_data_exactly_fits():
    found = windows(WalkForwardSpec.parse("6d", "2d", mode="anchored"), FIRST, FIRST + pd.Timedelta(days=10))
    assert spans(found)[-1] == ("20180110-20180118", "20180118-20180120")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train": "4d", "test": "0d"}, "test must be positive, got '0d'"),
        ({"train": "0d", "test": "2d"}, "train must be positive, got '0d'"),
        ({"train": "4d", "test": "2d", "step": "0d"}, "step must be positive, got '0d'"),
        ({"train": "4d", "test": "2d", "step": "-2d"}, "step must be positive, got '-2d'"),
        ({"train": "4d", "test": "2d", "step": "1d"}, "step 1d is shorter than the test span 2d"),
        ({"train": "36h", "test": "2d"}, "train '36h' is not a whole number of days"),
        ({"train": "four days", "test": "2d"}, "train 'four days' is not a time span"),
        ({"train": "4d", "test": None}, "test None is not a time span"),
        ({"train": "4d", "test": "2d", "mode": "expanding"}, "mode 'expanding' is not one of rolling, anchored"),
    ],
)
def test_bad_spans_are_refused_naming_the_setting_and_value(kwargs, message):
    with pytest.raises(WalkForwardError, match=message.replace("(", r"\(")):
        WalkForwardSpec.parse(**kwargs)


def test_a_window_longer_than_the_data_is_refused_with_the_data_span():
    with pytest.raises(WalkForwardError) as caught:
        windows(WalkForwardSpec.parse("8d", "3d"), FIRST, END)
    assert str(caught.value) == (
        "a window (train 8d + test 3d = 11d) is longer than the data: "
        "the stored candles' whole days 2018-01-10 to 2018-01-20 (10d)"
    )


def test_fewer_than_two_windows_is_refused():
    with pytest.raises(WalkForwardError, match="give 1 window over .* a walk-forward needs at least 2"):
        windows(WalkForwardSpec.parse("6d", "3d"), FIRST, END)


def test_grid_expands_in_order_and_bad_grids_are_refused():
    assert expand_grid({"buy_rsi": [25, 35], "sell_rsi": [70]}) == [
        {"buy_rsi": 25, "sell_rsi": 70},
        {"buy_rsi": 35, "sell_rsi": 70},
    ]
    with pytest.raises(WalkForwardError, match="the grid is empty"):
        expand_grid({})
    with pytest.raises(
        WalkForwardError, match=r"grid parameter 'buy_rsi': expected a non-empty list of values, got \[\]"
    ):
        expand_grid({"buy_rsi": []})
    with pytest.raises(WalkForwardError, match="grid parameter 'buy_rsi': expected a non-empty list of values, got 30"):
        expand_grid({"buy_rsi": 30})


def test_best_trial_ranks_by_objective_among_trials_with_enough_trades():
    trials = [
        ({"p": 1}, {"sharpe": 3.0, "profit_total": 0.01, "total_trades": 1}),
        ({"p": 2}, {"sharpe": 1.5, "profit_total": 0.05, "total_trades": 4}),
        ({"p": 3}, {"sharpe": 2.0, "profit_total": 0.05, "total_trades": 5}),
    ]
    assert best_trial(trials, "sharpe", 1, "w") == {"p": 1}
    assert best_trial(trials, "sharpe", 2, "w") == {"p": 3}
    assert best_trial(trials, "profit", 2, "w") == {"p": 2}  # a tie: the first one
    with pytest.raises(WalkForwardError, match=r"window 0 \(20180110-20180114\): no trial made at least 6 trade\(s\)"):
        best_trial(trials, "sharpe", 6, "window 0 (20180110-20180114)")
    with pytest.raises(WalkForwardError, match="objective 'winrate' is not one of sharpe, sortino"):
        best_trial(trials, "winrate", 1, "w")


def outcome(start: float, equity: list[float], profits: list[float], day: str, **stats) -> WindowOutcome:
    index = pd.date_range(day, periods=len(equity), freq="1D", tz="UTC", name="date")
    trades = pd.DataFrame(
        {
            "pair": ["ETH/BTC"] * len(profits),
            "profit_abs": profits,
            "open_date": index[: len(profits)],
            "close_date": index[: len(profits)] + pd.Timedelta(hours=1),
        }
    )
    total = sum(profits)
    return WindowOutcome(
        trades,
        pd.DataFrame({"equity": equity}, index=index),
        {
            "starting_balance": start,
            "final_balance": start + total,
            "profit_total_abs": total,
            "profit_total": total / start,
            "total_trades": len(profits),
            **stats,
        },
    )


def test_stitching_chains_each_window_from_the_previous_end_balance_additively():
    first = outcome(100.0, [100.0, 104.0, 110.0], [4.0, 6.0], "2018-01-14")
    second = outcome(100.0, [100.0, 95.0], [-5.0], "2018-01-17")
    third = outcome(100.0, [100.0, 102.0], [2.0], "2018-01-19")

    curve = stitch_equity([first, second, third])
    assert curve["equity"].tolist() == [100.0, 104.0, 110.0, 110.0, 105.0, 105.0, 107.0]
    assert curve["window"].tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert curve.index[3] == pd.Timestamp("2018-01-17", tz="UTC")

    trades = stitch_trades([first, second, third])
    assert list(trades.columns[:2]) == ["window", "pair"]
    assert trades["window"].tolist() == [0, 0, 1, 2] and trades["profit_abs"].tolist() == [4.0, 6.0, -5.0, 2.0]
    assert str(trades["window"].dtype) == "int64"
    assert first.trades.columns.tolist() == ["pair", "profit_abs", "open_date", "close_date"]  # inputs untouched


def test_summary_sets_in_sample_means_beside_stitched_out_of_sample_figures():
    spec = WalkForwardSpec.parse("4d", "2d")
    found = windows(spec, FIRST, END)
    in_sample = [
        outcome(100.0, [100.0], [10.0], "2018-01-10", sharpe=2.0),  # 10% in 4 days
        outcome(100.0, [100.0], [2.0], "2018-01-12", sharpe=1.0),
        outcome(100.0, [100.0], [6.0], "2018-01-14", sharpe=0.0),
    ]
    out_of_sample = [
        outcome(100.0, [100.0, 101.0], [1.0], "2018-01-14", sharpe=1.0),
        outcome(100.0, [100.0, 99.0], [-1.0], "2018-01-16", sharpe=-1.0),
        outcome(100.0, [100.0, 103.0], [3.0], "2018-01-18", sharpe=3.0),
    ]
    summary = summarise(found, in_sample, out_of_sample)
    assert summary["is_annual_return"] == pytest.approx((0.10 + 0.02 + 0.06) / 3 * 365 / 4)
    assert summary["is_profit"] == pytest.approx(0.06) and summary["is_sharpe"] == pytest.approx(1.0)
    assert summary["oos_profit_abs"] == pytest.approx(3.0) and summary["oos_profit"] == pytest.approx(0.03)
    assert summary["oos_days"] == 6 and summary["oos_trades"] == 3
    assert summary["oos_annual_return"] == pytest.approx(0.03 * 365 / 6)
    assert summary["efficiency"] == pytest.approx((0.03 * 365 / 6) / (0.06 * 365 / 4))  # = 1/3
    assert summary["efficiency"] == pytest.approx(1 / 3)

    from freqtrade.data.metrics import calculate_sharpe

    stitched = stitch_trades(out_of_sample)
    assert summary["oos_sharpe"] == pytest.approx(
        calculate_sharpe(stitched, found[0].test_start.to_pydatetime(), found[-1].test_end.to_pydatetime(), 100.0)
    )

    losing = [outcome(100.0, [100.0], [-1.0], "2018-01-10")] * 3
    assert summarise(found, losing, out_of_sample)["efficiency"] is None  # undefined below zero in sample


def test_parameter_stability_counts_changes_and_the_spread_of_numbers():
    table = parameter_stability(
        [
            {"buy_rsi": 30, "stoploss": -0.1, "mode": "fast", "flag": True},
            {"buy_rsi": 30, "stoploss": -0.2, "mode": "slow", "flag": True},
            {"buy_rsi": 40, "stoploss": -0.1, "mode": "slow", "flag": False},
            {"buy_rsi": 20, "stoploss": -0.2, "mode": "slow", "flag": False},
        ]
    ).set_index("parameter")
    rsi = table.loc["buy_rsi"]
    assert rsi["values"] == [30, 30, 40, 20] and rsi["changes"] == 2 and rsi["distinct"] == 3
    assert rsi["mean"] == 30.0 and rsi["std"] == pytest.approx(50**0.5)
    assert rsi["cv"] == pytest.approx(50**0.5 / 30)
    stop = table.loc["stoploss"]
    assert stop["changes"] == 3 and stop["mean"] == pytest.approx(-0.15) and stop["cv"] == pytest.approx(0.05 / 0.15)
    assert table.loc["mode", "changes"] == 1 and pd.isna(table.loc["mode", "cv"])
    assert table.loc["flag", "changes"] == 1 and pd.isna(table.loc["flag", "mean"])  # booleans are not numbers here


def test_run_walk_forward_optimises_in_sample_then_backtests_the_choice_on_both_spans():
    found = windows(WalkForwardSpec.parse("4d", "2d"), FIRST, END)
    calls = []

    def optimise(timerange):
        calls.append(("optimise", timerange))
        return {"buy_rsi": 30 if timerange.startswith("20180110") else 35}

    def backtest(params, timerange):
        calls.append(("backtest", params["buy_rsi"], timerange))
        return outcome(100.0, [100.0, 101.0], [1.0], timerange[:8][:4] + "-" + timerange[4:6] + "-" + timerange[6:8])

    result = run_walk_forward(found, optimise, backtest)
    assert calls[:3] == [
        ("optimise", "20180110-20180114"),
        ("backtest", 30, "20180110-20180114"),
        ("backtest", 30, "20180114-20180116"),
    ]
    assert calls[3:6] == [
        ("optimise", "20180112-20180116"),
        ("backtest", 35, "20180112-20180116"),
        ("backtest", 35, "20180116-20180118"),
    ]
    assert result.params == [{"buy_rsi": 30}, {"buy_rsi": 35}, {"buy_rsi": 35}]
    table = result.window_table()
    assert table["test"].tolist() == ["20180114-20180116", "20180116-20180118", "20180118-20180120"]
    assert table["oos_annual_return"].tolist() == pytest.approx([0.01 * 365 / 2] * 3)
    assert table["efficiency"].tolist() == pytest.approx([2.0] * 3)  # 1% in 2 days over 1% in 4 days
    assert result.equity()["equity"].tolist() == [100.0, 101.0, 101.0, 102.0, 102.0, 103.0]

    with pytest.raises(WalkForwardError, match=r"window 0 \(20180110-20180114\): the search returned list"):
        run_walk_forward(found, lambda timerange: [30], backtest)


def test_grid_search_picks_the_best_point_and_reuses_its_in_sample_backtest():
    calls = []
    profits = {25: 2.0, 30: 5.0, 35: 1.0}

    def backtest(params, timerange):
        calls.append((params["buy_rsi"], timerange))
        return outcome(100.0, [100.0], [profits[params["buy_rsi"]]], "2018-01-11")

    search = GridSearch({"buy_rsi": [25, 30, 35]}, "profit_abs", 1, backtest)
    assert search.optimise("20180111-20180114") == {"buy_rsi": 30}
    assert calls == [(25, "20180111-20180114"), (30, "20180111-20180114"), (35, "20180111-20180114")]
    assert search.backtest({"buy_rsi": 30}, "20180111-20180114").stats["profit_total_abs"] == 5.0
    assert len(calls) == 3  # kept from the search
    search.backtest({"buy_rsi": 30}, "20180114-20180116")
    assert calls[-1] == (30, "20180114-20180116") and search.backtests == 4
    assert [(t["params"]["buy_rsi"], t["profit_abs"], t["trades"]) for t in search.trials] == [
        (25, 2.0, 1),
        (30, 5.0, 1),
        (35, 1.0, 1),
    ]
    with pytest.raises(WalkForwardError, match="objective 'winrate' is not one of"):
        GridSearch({"buy_rsi": [25]}, "winrate", 1, backtest)
    with pytest.raises(WalkForwardError, match="min_trades must be 0 or more, got -1"):
        GridSearch({"buy_rsi": [25]}, "sharpe", -1, backtest)
