"""Walk-forward optimisation through its asset on the offline sample: three windows, a two-point grid,
real Freqtrade backtests; the out-of-sample trades are exactly those of plain backtests of the chosen
parameters on the test spans, and bad settings fail before any backtest, naming the setting."""

import itertools
import json

import dagster as dg
import pandas as pd
import pytest

from resources.freqtrade_runner import BacktestRequest, StrategyParameterError
from tests.backtest_support import BacktestLocation, copy_strategies
from tests.market_data_support import failure_message, materialization_metadata
from tradai_assets.backtests import equity_curve, plan_backtest, trades_hash
from tradai_assets.walk_forward import build_walk_forward_asset, build_walk_forward_assets, walk_forward_key
from tradai_core.strategy_config import load_base_config
from tradai_core.strategy_discovery import discover_strategies

PAIRS = ["ETH/BTC", "LTC/BTC", "XMR/BTC"]
GRID = {"buy_rsi": [30, 35]}
SETTINGS = {"train": "3d", "test": "2d", "grid": GRID, "objective": "profit"}
KEY = walk_forward_key("SampleStrategy")


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("walk_forward")
    location = BacktestLocation(root, copy_strategies(root / "strategies", "SampleStrategy"))
    # Candles from 10 Jan 04:55 to 19 Jan 23:55: the whole days 11 to 19 Jan hold three windows.
    location.load_sample(module_instance, first="2018-01-10", last="2018-01-19")
    result = location.config("SampleStrategy", module_instance, {"exchange": {"pair_whitelist": PAIRS}})
    assert result.success, failure_message(result)
    return location


def materialise(location, instance, settings):
    asset = build_walk_forward_asset(location.specs["SampleStrategy"], load_base_config())
    return dg.materialize(
        [asset],
        instance=instance,
        resources={
            "arctic": location.arctic,
            "backtest_store": location.store,
            "freqtrade_runner": location.runner,
            "mlflow": location.mlflow,
        },
        run_config={"ops": {KEY.to_python_identifier(): {"config": settings}}},
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def walk_forward(location, module_instance):
    result = materialise(location, module_instance, SETTINGS)
    assert result.success, failure_message(result)
    return materialization_metadata(result, KEY)


def stored_state(location):
    try:
        return location.store.read_walk_forward("SampleStrategy")[3]["mlflow_run_id"]
    except KeyError:
        return None


def test_only_strategies_with_hyperopt_parameters_get_the_asset(tmp_path):
    copy_strategies(tmp_path, "SampleStrategy", "MlMomentum", "EmaCross")
    (tmp_path / "Plain.py").write_text(
        "from freqtrade.strategy import IStrategy\n\n\nclass Plain(IStrategy):\n    timeframe = '5m'\n"
    )
    assets = build_walk_forward_assets(discover_strategies(tmp_path), load_base_config())
    # MlMomentum is a model strategy; Plain declares no hyperopt parameters.
    assert {a.key for a in assets} == {KEY, walk_forward_key("EmaCross")}


def test_walk_forward_reports_windows_summary_stability_and_plot(location, walk_forward):
    windows = walk_forward["windows"].records
    assert [(r.data["train"], r.data["test"]) for r in windows] == [
        ("20180111-20180114", "20180114-20180116"),
        ("20180113-20180116", "20180116-20180118"),
        ("20180115-20180118", "20180118-20180120"),
    ]
    chosen = walk_forward["chosen_params"]
    assert [json.loads(r.data["params"]) for r in windows] == chosen
    assert all(p["buy_rsi"] in GRID["buy_rsi"] for p in chosen)
    # Two grid points per window, and the chosen point's in-sample backtest is the search's own.
    assert walk_forward["backtests"] == 3 * 2 + 3

    _, _, report, lineage = location.store.read_walk_forward("SampleStrategy")
    trials = pd.DataFrame(report["trials"])
    for window, row in zip(windows, chosen, strict=True):
        mine = trials[trials["train"] == window.data["train"]]
        assert len(mine) == 2
        best = mine.loc[mine["profit"].idxmax()]  # a tie goes to the first point, as idxmax does
        assert best["params"] == row
        assert window.data["is_trades"] == best["trades"]
    # The grid points trade differently, so the choice is a real one.
    assert (
        trials.groupby("train")["trades"].nunique().max() > 1 or trials.groupby("train")["profit"].nunique().max() > 1
    )

    summary = report["summary"]
    assert walk_forward["oos_trades"] == walk_forward["trades"] == summary["oos_trades"] > 0
    oos_profit = sum(r.data["oos_profit_abs"] for r in windows)
    assert summary["oos_profit_abs"] == pytest.approx(oos_profit)
    assert summary["oos_annual_return"] == pytest.approx(oos_profit / 0.2 * 365 / 6)
    is_annual = sum(r.data["is_annual_return"] for r in windows) / 3
    if is_annual > 0:
        assert walk_forward["efficiency"] == pytest.approx(summary["oos_annual_return"] / is_annual)
    else:
        assert walk_forward["efficiency"] == "undefined: the in-sample return is not positive"
    assert "Walk-forward efficiency" in walk_forward["summary"]

    stability = {r.data["parameter"]: r.data for r in walk_forward["parameter_stability"].records}
    assert json.loads(stability["buy_rsi"]["values"]) == [p["buy_rsi"] for p in chosen]
    assert stability["buy_rsi"]["changes"] == sum(a != b for a, b in itertools.pairwise(chosen))

    assert walk_forward["equity_curve"].startswith("![out-of-sample equity of SampleStrategy](data:image/png;base64,")
    params, tags, metrics = location.mlflow.run_record(walk_forward["mlflow_run_id"])
    assert tags["tradai.kind"] == "walk_forward" and json.loads(params["chosen_params"]) == chosen
    assert params["timerange"] == "20180111-20180120" and json.loads(params["grid"]) == GRID
    assert metrics["oos_trades"] == summary["oos_trades"]
    artifacts = {a.path for a in location.mlflow._client().list_artifacts(walk_forward["mlflow_run_id"])}
    assert artifacts == {"report.json", "config.json", "trades.parquet", "equity.png", "SampleStrategy.py"}
    assert lineage["mlflow_run_id"] == walk_forward["mlflow_run_id"]


def test_out_of_sample_trades_are_plain_backtests_of_the_chosen_parameters(location, walk_forward, tmp_path):
    """Each window's chosen value written into the strategy file as the parameter's default, backtested
    the ordinary way on the test span: the same trades, and the stitched curve chains their balances."""
    trades, equity, report, _ = location.store.read_walk_forward("SampleStrategy")
    assert trades_hash(trades) == walk_forward["trades_hash"]
    config, digest = location.store.latest_config("SampleStrategy")
    source = location.specs["SampleStrategy"].file.read_text()
    declared = 'buy_rsi = IntParameter(low=1, high=50, default=30, space="buy"'
    assert declared in source
    offset = 0.0
    for window, params in zip(report["windows"], walk_forward["chosen_params"], strict=True):
        strategy = tmp_path / f"window{window['window']}" / "SampleStrategy.py"
        strategy.parent.mkdir()
        strategy.write_text(source.replace(declared, declared.replace("default=30", f"default={params['buy_rsi']}")))
        plan = plan_backtest(
            location.arctic, "SampleStrategy", strategy, {**config, "timerange": window["test"]}, digest
        )
        plain = location.runner.run(plan.request)
        mine = trades[trades["window"] == window["window"]].drop(columns="window").reset_index(drop=True)
        assert len(plain.trades) == window["oos_trades"]
        assert trades_hash(mine) == trades_hash(plain.trades), f"window {window['window']} ({window['test']})"
        # The window's curve is the plain backtest's, shifted by the profit of the windows before it.
        curve = equity[equity["window"] == window["window"]]["equity"]
        expected = equity_curve(plain.wallet)["equity"] + offset
        assert curve.index.equals(expected.index)
        assert curve.to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-12)
        offset += plain.stats["final_balance"] - plain.stats["starting_balance"]
    assert offset == pytest.approx(report["summary"]["oos_profit_abs"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"grid": {"buy_rsii": [30]}},
            "grid: 'buy_rsii' is not a hyperopt parameter of SampleStrategy (it has: buy_rsi",
        ),
        ({"grid": {"buy_rsi": [30, 60]}}, "grid: buy_rsi: 60 is outside 1..50"),
        (
            {"train": "8d", "test": "3d"},
            (
                "a window (train 8d + test 3d = 11d) is longer than the data: "
                "the stored candles' whole days 2018-01-11 to 2018-01-20 (9d)"
            ),
        ),
        ({"objective": "winrate"}, "objective 'winrate' is not one of sharpe"),
    ],
)
def test_bad_settings_fail_before_any_backtest_naming_them(location, module_instance, change, message):
    before = stored_state(location)
    runs_before = len(location.mlflow.runs("strategies/SampleStrategy"))
    result = materialise(location, module_instance, {**SETTINGS, **change})
    assert not result.success
    assert f"SampleStrategy: {message}" in failure_message(result)
    assert stored_state(location) == before
    assert len(location.mlflow.runs("strategies/SampleStrategy")) == runs_before


def test_the_runner_refuses_parameters_the_strategy_does_not_take(location):
    config, digest = location.store.latest_config("SampleStrategy")
    plan = plan_backtest(location.arctic, "SampleStrategy", location.specs["SampleStrategy"].file, config, digest)
    parameters = {"buy": {"sell_rsi": 40}, "sell": {"nope": 1}, "protection": {"buy_rsi": 30.5}}
    request = BacktestRequest(**{**plan.request.__dict__, "config": {**plan.request.config, "strategy_parameters": parameters}})
    with pytest.raises(StrategyParameterError) as caught:
        location.runner.run(request)
    message = str(caught.value)
    assert "SampleStrategy.py: sell_rsi: 40 is outside 50..100; 'nope' is not a hyperopt parameter" in message
    assert "buy_rsi: 30.5 is not an integer (IntParameter 1..50, space buy)" in message
    # Under another space than its own Freqtrade would ignore the value without a word.
    assert "sell_rsi: given in space 'buy', but declared in space 'sell'" in message
    assert "buy_rsi: given in space 'protection', but declared in space 'buy'" in message
