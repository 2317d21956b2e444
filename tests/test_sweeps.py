"""Parameter sweeps on the offline sample (2 pairs, a few days): specs refused before any trial starts,
grid/random/Optuna planning, a sweep run through a Dagster instance with a trial that fails alone, MLflow
parent and child runs, trials that reproduce a plain backtest, and the explicit write-back."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from resources.sweep_store import SweepStore
from resources.sweep_studies import SweepStudies
from sensors.sweeps import build_sweep_sensor, sweep_requests
from tests.backtest_support import EXAMPLE_STRATEGIES, BacktestLocation, spot_sample_entry
from tests.market_data_support import SAMPLE_DATA, failure_message, materialization_metadata
from tradai_assets.backtests import plan_backtest, trades_hash
from tradai_assets.market_data import content_hash
from tradai_assets.sweeps import build_sweeps, plan_sweep, run_sweep
from tradai_core.keys import (
    APPLY_SWEEP_JOB,
    SWEEP_JOB,
    SWEEP_SUMMARY_JOB,
    SWEEP_SUMMARY_KEY,
    SWEEP_TRIAL_KEY,
    SWEEP_TRIALS,
    SWEEP_TRIALS_JOB,
    SWEEPS,
    config_key,
)
from tradai_core.strategy_config import build_strategy_config, load_base_config
from tradai_core.sweep_status import sweep_status
from tradai_core.sweeps import Dimension, SweepSpecError, parse_spec, plan_grid_or_random

HERE = Path(__file__).resolve().parent
PAIRS = ["ETH/BTC", "LTC/BTC"]
TIMERANGE = "20180111-20180114"
FRAGILE_GRID = {"buy_rsi": [30, 13, 40, 25]}


@pytest.fixture(scope="module")
def location(tmp_path_factory, module_instance):
    root = tmp_path_factory.mktemp("sweeps")
    strategies = root / "strategies"
    strategies.mkdir()
    for source in (
        EXAMPLE_STRATEGIES / "SampleStrategy.py",
        HERE / "sweep_strategies" / "FragileRsi.py",
        HERE / "bias_strategies" / "NoPeeking.py",
    ):
        shutil.copyfile(source, strategies / source.name)
    entry = {
        **spot_sample_entry(),
        "pairs": PAIRS,
        "start": "2018-01-10",
        "end": "2018-01-15",
        "import_dir": str(SAMPLE_DATA),
    }
    store_root = root
    location = BacktestLocation(root, strategies, spot_entry=entry)
    location.sweep_store = SweepStore(arctic=location.arctic)
    location.studies = SweepStudies(storage_url=f"sqlite:///{store_root / 'sweeps.db'}")
    sweeps = build_sweeps(location.strategies.specs)
    location.defs = dg.Definitions(
        assets=location.defs.assets + sweeps.assets,
        asset_checks=location.defs.asset_checks,
        jobs=list(location.defs.jobs) + sweeps.jobs,
        sensors=[build_sweep_sensor(sweeps.sensor_jobs)],
        resources={**location.defs.resources, "sweep_store": location.sweep_store, "sweep_studies": location.studies},
    )
    location.job = location.defs.resolve_implicit_global_asset_job_def()
    location.load_sample(module_instance, "2018-01-10", "2018-01-14")
    return location


def start_sweep(location, instance, **config):
    return location.defs.resolve_job_def(SWEEP_JOB).execute_in_process(
        instance=instance, run_config={"ops": {"plan_sweep": {"config": config}}}, raise_on_error=False
    )


def run_request(location, instance, request: dg.RunRequest):
    job = location.defs.resolve_job_def(request.job_name)
    return job.execute_in_process(
        instance=instance, tags=request.tags, partition_key=request.partition_key, raise_on_error=False
    )


def fragile_spec(**extra):
    return {
        "strategy": "FragileRsi",
        "timerange": TIMERANGE,
        "search": "grid",
        "grid": FRAGILE_GRID,
        "budget": 4,
        "min_trades": 1,
        "trials_per_run": 2,
        "pairs": PAIRS,
        **extra,
    }


# Bad input: refused before any trial starts -------------------------------------------------------


BAD_SWEEPS = [
    ({"grid": {"buy_rsii": [20]}}, "unknown parameter(s) buy_rsii"),
    ({"search": "random", "grid": {}, "ranges": {"buy_rsi": [40, 20]}}, "inverted range (low > high) for buy_rsi"),
    ({"grid": {"buy_rsi": []}}, "grid: empty list of values for buy_rsi"),
    ({"budget": 0}, "budget: Input should be greater than or equal to 1"),
    ({"grid": {"buy_rsi": [20, 99]}}, "grid.buy_rsi: value(s) [99] outside its declared [10, 45]"),
    ({"spaces": ["protection"]}, "no parameters in space(s) protection"),
    ({"grid": {}, "budget": 3}, "the grid has 1116 combinations"),
    ({"strategy": "NoPeeking", "grid": {}}, "NoPeeking declares no hyperopt parameters"),
    ({"timerange": "20180101-20180113"}, "reaches outside the stored candles"),
    ({"search": "nsga2"}, "second_objective: NSGA-II searches two objectives"),
    ({"timerange": "20180114-20180111"}, "timerange: '20180114-20180111' is not a YYYYMMDD-YYYYMMDD range"),
]


@pytest.mark.parametrize(("change", "named"), BAD_SWEEPS)
def test_bad_sweeps_are_refused_naming_the_fault(location, change, named):
    values = {**fragile_spec(), **change}
    with pytest.raises(SweepSpecError) as raised:
        plan_sweep(parse_spec(values), "bad", location.specs[values["strategy"]], location.arctic)
    assert named in str(raised.value)


@pytest.mark.parametrize(("change", "named"), [BAD_SWEEPS[0], BAD_SWEEPS[8]])
def test_the_sweep_job_refuses_before_any_trial_starts(location, module_instance, change, named):
    sweep_id = f"bad_{BAD_SWEEPS.index((change, named))}"
    result = start_sweep(location, module_instance, **{**fragile_spec(), **change, "sweep_id": sweep_id})
    assert not result.success
    assert named in failure_message(result)
    # Nothing was planned, registered or started.
    assert location.sweep_store.plan(sweep_id) is None
    assert sweep_id not in module_instance.get_dynamic_partitions(SWEEPS.name)
    assert not [k for k in module_instance.get_dynamic_partitions(SWEEP_TRIALS.name) if k.startswith(sweep_id)]
    assert not module_instance.get_runs(filters=dg.RunsFilter(tags={"tradai/sweep_id": sweep_id}))


def test_a_sweep_id_is_used_once(location, module_instance):
    assert start_sweep(location, module_instance, **fragile_spec(sweep_id="taken_once")).success
    plan = location.sweep_store.plan("taken_once")
    again = start_sweep(location, module_instance, **fragile_spec(sweep_id="taken_once", budget=5))
    assert not again.success and "sweep_id 'taken_once' is taken" in failure_message(again)
    assert location.sweep_store.plan("taken_once") == plan


# Planning -----------------------------------------------------------------------------------------


def test_grid_and_random_plans_are_fixed_and_seeded():
    dims = [
        Dimension("a", "buy", "int", 1, 3),
        Dimension("b", "sell", "categorical", choices=("x", "y")),
        Dimension("c", "sell", "decimal", 0.1, 0.3, 1),
    ]
    grid = plan_grid_or_random(
        parse_spec({"strategy": "S", "timerange": TIMERANGE, "search": "grid", "budget": 18}), dims
    )
    assert len(grid) == 18 and len({json.dumps(p, sort_keys=True) for p in grid}) == 18
    assert {p["c"] for p in grid} == {0.1, 0.2, 0.3}
    random_spec = {"strategy": "S", "timerange": TIMERANGE, "search": "random", "budget": 6, "seed": 7}
    first = plan_grid_or_random(parse_spec(random_spec), dims)
    assert first == plan_grid_or_random(parse_spec(random_spec), dims)
    assert first != plan_grid_or_random(parse_spec({**random_spec, "seed": 8}), dims)
    assert all(1 <= p["a"] <= 3 and p["b"] in ("x", "y") and p["c"] in (0.1, 0.2, 0.3) for p in first)


def test_parameters_are_detected_the_freqtrade_way_and_narrowed(location):
    spec = parse_spec(
        {
            "strategy": "SampleStrategy",
            "timerange": TIMERANGE,
            "search": "tpe",
            "budget": 2,
            "spaces": ["buy"],
            "ranges": {"buy_rsi": [20, 35]},
            "pairs": PAIRS,
        }
    )
    plan = plan_sweep(spec, "detect_only", location.specs["SampleStrategy"], location.arctic)
    assert plan["dimensions"] == [
        {"name": "buy_rsi", "space": "buy", "kind": "int", "low": 20, "high": 35, "decimals": None, "choices": None}
    ]
    assert [t["params"] for t in plan["trials"]] == [None, None]  # Optuna trials are asked, not planned
    assert plan["timerange"] == TIMERANGE and plan["data_versions"] == {f"{p}|5m|spot": 0 for p in PAIRS}


# A sweep through the Dagster instance -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fragile_sweep(location, module_instance):
    """FragileRsi's 4-trial grid in batches of 2, started by the sweep job, fanned out by the sensor."""
    started = start_sweep(location, module_instance, **fragile_spec(sweep_id="fragile"))
    assert started.success, failure_message(started)
    requests = sweep_requests(module_instance, location.sweep_store)
    batches = [r for r in requests if r.job_name == SWEEP_TRIALS_JOB and r.tags["tradai/sweep_id"] == "fragile"]
    assert [r.tags["dagster/asset_partition_range_start"] for r in batches] == ["fragile-0000", "fragile-0002"]
    assert all(r.tags["tradai/kind"] == "sweep" and r.tags["ecs/cpu"] == "1024" for r in batches)
    assert not [r for r in requests if r.job_name == SWEEP_SUMMARY_JOB and r.partition_key == "fragile"]
    runs = [run_request(location, module_instance, r) for r in batches]
    summary_requests = [
        r
        for r in sweep_requests(module_instance, location.sweep_store)
        if r.job_name == SWEEP_SUMMARY_JOB and r.partition_key == "fragile"
    ]
    assert len(summary_requests) == 1
    summary = run_request(location, module_instance, summary_requests[0])
    assert summary.success, failure_message(summary)
    return runs, summary


def test_a_failing_trial_fails_alone_and_the_sweep_completes(location, module_instance, fragile_sweep):
    runs, summary = fragile_sweep
    assert not runs[0].success and runs[1].success
    assert "fragile-0001" in failure_message(runs[0]) and "buy_rsi 13 is unlucky" in failure_message(runs[0])
    statuses = module_instance.get_status_by_partition(
        SWEEP_TRIAL_KEY, [f"fragile-000{n}" for n in range(4)], SWEEP_TRIALS
    )
    assert {k: v.value for k, v in statuses.items()} == {
        "fragile-0000": "MATERIALIZED",
        "fragile-0001": "FAILED",
        "fragile-0002": "MATERIALIZED",
        "fragile-0003": "MATERIALIZED",
    }
    meta = materialization_metadata(summary, SWEEP_SUMMARY_KEY)
    assert (meta["ranked"], meta["failed"], meta["planned"]) == (3, 1, 4)
    assert meta["objective_plot"].startswith("![sharpe per parameter](data:image/png;base64,")
    ranked, stored = location.sweep_store.summary("fragile")
    assert list(ranked["trial"])[-1] == "fragile-0001" and ranked["status"].iloc[-1] == "failed"
    ok = ranked[ranked["status"] == "ok"]
    assert list(ok["sharpe"]) == sorted(ok["sharpe"], reverse=True) and list(ok["rank"]) == [1, 2, 3]
    assert stored["best_trial"] == meta["best_trial"] == ok["trial"].iloc[0]
    status = sweep_status(module_instance, location.sweep_store, "fragile")
    assert (status["state"], status["materialized"], status["failed"]) == ("summarised", 3, 1)
    assert "buy_rsi 13 is unlucky" in status["errors"]["fragile-0001"]
    # Done: the sensor asks for nothing more for this sweep.
    assert not [
        r
        for r in sweep_requests(module_instance, location.sweep_store)
        if r.tags.get("tradai/sweep_id") == "fragile" and r.job_name == SWEEP_SUMMARY_JOB
    ]


def test_mlflow_has_a_parent_run_per_sweep_and_a_child_per_finished_trial(location, fragile_sweep):
    plan = location.sweep_store.plan("fragile")
    children = location.mlflow.child_runs("strategies/FragileRsi", plan["parent_run_id"])
    assert sorted(c["params"]["trial_key"] for c in children) == ["fragile-0000", "fragile-0002", "fragile-0003"]
    for child in children:
        assert {
            "config_hash",
            "markets_snapshot_hash",
            "data_versions",
            "strategy_source_hash",
            "freqtrade_version",
            "ccxt_version",
            "param.buy_rsi",
        } <= set(child["params"])
        assert "sharpe" in child["metrics"] and child["tags"]["tradai.kind"] == "sweep_trial"
    params, tags, metrics = location.mlflow.run_record(plan["parent_run_id"])
    assert params["search"] == "grid" and tags["tradai.trials_failed"] == "1" and "best_sharpe" in metrics
    artifacts = {a.path for a in location.mlflow._client().list_artifacts(plan["parent_run_id"])}
    assert artifacts == {"trials.csv", "objective.png", "best_parameters.json"}


def test_a_trial_reproduces_and_equals_a_plain_backtest_with_its_parameters(location, module_instance, fragile_sweep):
    trial = next(t for t in location.sweep_store.trials("fragile") if t["key"] == "fragile-0002")
    # The same trial again (re-run from the UI as one partition): the same trades.
    again = location.job.execute_in_process(
        instance=module_instance, asset_selection=[SWEEP_TRIAL_KEY], partition_key="fragile-0002"
    )
    assert again.success
    rerun = next(t for t in location.sweep_store.trials("fragile") if t["key"] == "fragile-0002")
    assert rerun["trades_hash"] == trial["trades_hash"] and rerun["lineage"] == trial["lineage"]
    # A plain backtest with the trial's parameters as a config override.
    spec = location.specs["FragileRsi"]
    config = build_strategy_config(
        load_base_config(),
        spec,
        {
            "timerange": TIMERANGE,
            "exchange": {"pair_whitelist": PAIRS},
            "strategy_parameters": {"buy": {"buy_rsi": trial["params"]["buy_rsi"]}},
        },
    )
    plan = plan_backtest(location.arctic, spec.name, spec.file, config, content_hash(config))
    assert plan.lineage()["config_hash"] == trial["lineage"]["config_hash"]
    assert trades_hash(location.runner.run(plan.request).trades) == trial["trades_hash"]


def test_best_parameters_are_written_back_only_when_asked(location, module_instance, fragile_sweep):
    before = location.store.latest_config("FragileRsi")
    best = location.sweep_store.summary("fragile")[1]["best_parameters"]
    result = location.defs.resolve_job_def(APPLY_SWEEP_JOB).execute_in_process(
        instance=module_instance, run_config={"ops": {"write_best_parameters": {"config": {"sweep_id": "fragile"}}}}
    )
    config, digest = location.store.latest_config("FragileRsi")
    assert config["strategy_parameters"] == {"buy": {"buy_rsi": best["buy_rsi"]}}
    assert before is None or before[1] != digest
    assert digest == content_hash(config)
    meta = materialization_metadata(result, config_key("FragileRsi"))
    assert meta["config_hash"] == digest and meta["sweep_id"] == "fragile"
    failed_trial = location.defs.resolve_job_def(APPLY_SWEEP_JOB).execute_in_process(
        instance=module_instance,
        raise_on_error=False,
        run_config={"ops": {"write_best_parameters": {"config": {"sweep_id": "fragile", "trial": "fragile-0001"}}}},
    )
    assert not failed_trial.success and "not a finished trial of sweep fragile" in failure_message(failed_trial)
    assert location.store.latest_config("FragileRsi") == (config, digest)


def test_optuna_sweep_runs_in_process_without_dagster(location, tmp_path):
    studies = SweepStudies(storage_url=f"sqlite:///{tmp_path / 'studies.db'}")
    ranked = run_sweep(
        {
            "strategy": "SampleStrategy",
            "timerange": TIMERANGE,
            "search": "tpe",
            "budget": 3,
            "spaces": ["buy"],
            "min_trades": 0,
            "seed": 3,
            "pairs": PAIRS,
        },
        location.specs["SampleStrategy"],
        arctic=location.arctic,
        runner=location.runner,
        studies=studies,
        sweep_id="tpe_local",
    )
    assert len(ranked) == 3 and all(r.status == "ok" for r in ranked)
    assert all(1 <= r.params["buy_rsi"] <= 50 for r in ranked)
    assert len({r.params["buy_rsi"] for r in ranked}) >= 2
    assert [r.objective for r in ranked] == sorted((r.objective for r in ranked), reverse=True)
    assert studies.trial_count("tpe_local") == 3
