"""A backtest logged to a real `mlflow server` (SQLite backend, artifacts served by the server, as in
AWS), read back and reproduced through it."""

import json

import dagster as dg
import pytest

from resources.mlflow_tracker import MlflowTracker
from tests.backtest_support import BacktestLocation, copy_strategies
from tests.market_data_support import INSTANCE_OVERRIDES, failure_message, materialization_metadata
from tests.servers import mlflow_server
from tradai_assets.strategies import backtest_key


@pytest.mark.integration
def test_backtest_is_logged_to_a_real_mlflow_server_and_reproduces_from_it(tmp_path):
    with mlflow_server(tmp_path / "mlflow") as server, dg.instance_for_test(overrides=INSTANCE_OVERRIDES) as instance:
        url = server.url
        tracker = MlflowTracker(tracking_uri=url, ui_url=url)
        location = BacktestLocation(tmp_path / "location", copy_strategies(tmp_path / "location" / "strategies", "EmaCross"), mlflow=tracker)
        location.load_sample(instance)  # while the server starts
        server.wait_ready()
        result = location.backtest("EmaCross", instance, {"timerange": "20180120-20180130"})
        assert result.success, failure_message(result)
        meta = materialization_metadata(result, backtest_key("EmaCross"))
        assert meta["mlflow_run"].startswith(f"{url}/#/experiments/")

        params, tags, metrics = tracker.run_record(meta["mlflow_run_id"])
        assert params["timerange"] == "20180120-20180130" and tags["tradai.trades_hash"] == meta["trades_hash"]
        assert metrics["trades"] == meta["trades"] > 0
        assert [r["run_id"] for r in tracker.runs("strategies/EmaCross")] == [meta["mlflow_run_id"]]
        artifacts = {a.path for a in tracker._client().list_artifacts(meta["mlflow_run_id"])}
        assert artifacts == {"config.json", "markets.json", "trades.parquet", "stats.json", "EmaCross.py", "equity.png"}
        config = json.loads(tracker.download(meta["mlflow_run_id"], "config.json", tmp_path / "download").read_text())
        assert config["timerange"] == "20180120-20180130"
        # The artifacts went through the server into its own store.
        assert list((tmp_path / "mlflow" / "artifacts").rglob("trades.parquet"))

        reproduced = location.run_job("reproduce_backtest", instance, "rerun_logged_backtest", {"mlflow_run_id": meta["mlflow_run_id"]})
        assert reproduced.success, failure_message(reproduced)
