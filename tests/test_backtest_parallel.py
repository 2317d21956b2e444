"""Several strategies backtest at once, each step in its own process (Dagster's multiprocess executor,
as `make dev` runs a multi-asset materialisation), and nothing of one reaches another: each result
equals the strategy's serial result, and MLflow holds one run per strategy in its own experiment."""

import dagster as dg

from tests.backtest_support import BacktestLocation, copy_strategies, reconstructable_location_job
from tests.market_data_support import INSTANCE_OVERRIDES, failure_message, materialization_metadata
from tradai_assets.strategies import backtest_key

STRATEGIES = ["SampleStrategy", "RsiMeanReversion", "EmaCross"]


def test_three_strategies_backtest_in_parallel_processes_as_they_do_serially(tmp_path):
    root = tmp_path / "location"
    location = BacktestLocation(root, copy_strategies(root / "strategies", *STRATEGIES))
    with dg.instance_for_test(overrides=INSTANCE_OVERRIDES) as instance:
        location.load_sample(instance)
        for name in STRATEGIES:  # ten days keep the test short
            assert location.config(name, instance, {"timerange": "20180120-20180130"}).success

        # A fresh MLflow store: the three processes also race to create it.
        with dg.execute_job(
            reconstructable_location_job(root),
            instance=instance,
            asset_selection=[backtest_key(n) for n in STRATEGIES],
            run_config={"execution": {"config": {"multiprocess": {"max_concurrent": len(STRATEGIES)}}}},
        ) as parallel:
            assert parallel.success, failure_message(parallel)
            step_pids = {e.step_key: e.pid for e in parallel.all_events if e.event_type_value == "STEP_START"}
            parallel_meta = {n: materialization_metadata(parallel, backtest_key(n)) for n in STRATEGIES}
            parallel_run_id = parallel.run_id
        assert len(set(step_pids.values())) == len(STRATEGIES), step_pids

        for name in STRATEGIES:
            runs = location.mlflow.runs(f"strategies/{name}")
            assert [r["run_id"] for r in runs] == [parallel_meta[name]["mlflow_run_id"]]
            assert runs[0]["params"]["strategy"] == name
            assert runs[0]["tags"]["dagster.run_id"] == parallel_run_id
            assert runs[0]["tags"]["tradai.trades_hash"] == parallel_meta[name]["trades_hash"]
            lineage = location.store.read_backtest(name)[3]
            assert lineage["mlflow_run_id"] == parallel_meta[name]["mlflow_run_id"]

        for name in STRATEGIES:
            serial = location.job.execute_in_process(instance=instance, asset_selection=[backtest_key(name)])
            assert serial.success, failure_message(serial)
            serial_meta = materialization_metadata(serial, backtest_key(name))
            assert serial_meta["trades_hash"] == parallel_meta[name]["trades_hash"], name
            assert serial_meta["trades"] == parallel_meta[name]["trades"] > 0
