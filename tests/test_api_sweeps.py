"""The sweep routes over real HTTP (the API under uvicorn on 127.0.0.1) against a real Dagster webserver
(runs stay queued) and the sweep store in ArcticDB on LMDB: a spec refused by field before anything is
launched, the `sweep` job launched with the spec as run config, status and ranking from trial partitions
that really materialised or failed in the webserver's instance, and a cancel that sticks (the sweep
sensor launches nothing more)."""

import shutil

import dagster as dg
import httpx
import pytest

from resources.arctic import ArcticStore
from resources.sweep_store import SweepStore
from sensors.sweeps import sweep_requests
from tests.api_support import REPO, bearer, dagster_webserver, hs256_settings, hs256_token, queued_run, serve_api
from tradai_api.app import create_app
from tradai_api.auth import BACKTESTS_READ
from tradai_api.dagster_client import DagsterClient
from tradai_client.client import TradaiClient
from tradai_core.keys import SWEEP_JOB, SWEEP_TAG, SWEEP_TRIAL_KEY, SWEEP_TRIALS, SWEEPS
from tradai_core.sweeps import SweepSpec, TrialResult, trial_key

TIMERANGE = "20180111-20180114"
GRID_SPEC = {"strategy": "FragileRsi", "timerange": TIMERANGE, "search": "grid", "grid": {"buy_rsi": [25, 30]},
             "budget": 2, "min_trades": 1}


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster-webserver")
    with dagster_webserver(root) as url:
        yield url, root / "dagster-home"


@pytest.fixture(scope="module")
def graphql_url(webserver):
    return webserver[0]


@pytest.fixture(scope="module")
def instance(webserver):
    with dg.DagsterInstance.from_config(str(webserver[1])) as opened:
        yield opened


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("api-sweeps")


@pytest.fixture(scope="module")
def store(root) -> SweepStore:
    return SweepStore(arctic=ArcticStore(uri=f"lmdb://{root / 'arctic'}"))


@pytest.fixture(scope="module")
def api_url(root, graphql_url, store):
    strategies = root / "strategies"
    strategies.mkdir()
    shutil.copyfile(REPO / "tests" / "sweep_strategies" / "FragileRsi.py", strategies / "FragileRsi.py")
    (strategies / "Plain.py").write_text("from freqtrade.strategy import IStrategy\nclass Plain(IStrategy):\n    pass\n")
    settings = hs256_settings(root, strategies_dir=strategies, dagster_graphql_url=graphql_url)
    with serve_api(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def api(api_url):
    with TradaiClient(api_url, hs256_token(subject="quant-1")) as client:
        yield client


def sweep_runs(graphql_url: str) -> list:
    return DagsterClient(graphql_url).runs(SWEEP_JOB, limit=1000)


def test_start_launches_the_sweep_job_with_the_spec_as_run_config(api, graphql_url):
    accepted = api.start_sweep({**GRID_SPEC, "sweep_id": "api_grid"})
    assert accepted["sweep_id"] == "api_grid" and accepted["state"] == "planning"
    run = queued_run(graphql_url, accepted["job_id"])
    assert run["jobName"] == SWEEP_JOB and run["status"] == "QUEUED"
    config = run["runConfig"]["ops"]["plan_sweep"]["config"]
    assert config["sweep_id"] == "api_grid" and config["grid"] == {"buy_rsi": [25, 30]}
    assert SweepSpec.model_validate({k: v for k, v in config.items() if k != "sweep_id"}).budget == 2
    assert run["tags"][SWEEP_TAG] == "api_grid" and run["tags"]["tradai/requested_by"] == "quant-1"

    shown = api.sweep("api_grid")
    assert shown["state"] == "planning" and shown["job_id"] == accepted["job_id"]
    assert "api_grid" in [s["sweep_id"] for s in api.sweeps(strategy="FragileRsi")]
    before = len(sweep_runs(graphql_url))
    taken = httpx.post(f"{api.url}/api/v1/sweeps", json={**GRID_SPEC, "sweep_id": "api_grid"}, headers=api._http.headers)
    assert taken.status_code == 409 and "api_grid" in taken.json()["detail"]
    assert len(sweep_runs(graphql_url)) == before


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"budget": 0}, "budget", "greater than or equal to 1"),
        ({"timerange": "20180114-20180111"}, "timerange", "start before its end"),
        ({"grid": {"buy_rsj": [25]}}, "grid", "unknown parameter(s) buy_rsj"),
        ({"grid": {"buy_rsi": [25, 99]}}, "grid", "outside its declared"),
        ({"grid": {"buy_rsi": []}}, "grid", "empty list of values for buy_rsi"),
        ({"ranges": {"sell_rsi": [70, 60]}, "grid": {}, "search": "random"}, "ranges", "inverted range"),
        ({"grid": {"buy_rsi": [25, 30, 35]}}, "budget", "3 combinations"),
        ({"search": "nsga2", "grid": {}}, "second_objective", "NSGA-II searches two objectives"),
        ({"spaces": ["roi"], "grid": {}}, "spaces", "no parameters in space(s) roi"),
        ({"strategy": "Plain", "grid": {}}, "strategy", "declares no hyperopt parameters"),
        ({"overrides": {"stake_amont": 1}}, "overrides", "unknown Freqtrade config key stake_amont"),
        ({"sweep_id": "Bad-Id"}, "sweep_id", "should match pattern"),
        ({"objective": "luck"}, "objective", "Input should be"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_422_naming_the_field_and_launch_nothing(api, graphql_url, change, field, words):
    before = len(sweep_runs(graphql_url))
    answer = httpx.post(f"{api.url}/api/v1/sweeps", json={**GRID_SPEC, **change}, headers=api._http.headers)
    assert answer.status_code == 422, answer.text
    errors = answer.json()["detail"]
    assert any(e["loc"][:2] == ["body", field] and words in e["msg"] for e in errors), errors
    assert len(sweep_runs(graphql_url)) == before


def test_unknown_strategy_and_sweep_are_404(api):
    answer = httpx.post(f"{api.url}/api/v1/sweeps", json={**GRID_SPEC, "strategy": "NoSuch"}, headers=api._http.headers)
    assert answer.status_code == 404 and "NoSuch" in answer.json()["detail"]
    for path in ("/api/v1/sweeps/no_such", "/api/v1/sweeps/no_such/results"):
        missing = httpx.get(f"{api.url}{path}", headers=api._http.headers)
        assert missing.status_code == 404 and "no_such" in missing.json()["detail"]
    refused = httpx.post(f"{api.url}/api/v1/sweeps/no_such/cancel", headers=api._http.headers)
    assert refused.status_code == 404


def test_reading_needs_backtests_read_and_starting_backtests_run(api_url):
    reader = bearer(hs256_token([BACKTESTS_READ], subject="reader"))
    assert httpx.get(f"{api_url}/api/v1/sweeps", headers=reader).status_code == 200
    denied = httpx.post(f"{api_url}/api/v1/sweeps", json=GRID_SPEC, headers=reader)
    assert denied.status_code == 403 and "backtests:run" in denied.json()["detail"]
    assert httpx.get(f"{api_url}/api/v1/sweeps").status_code == 401


def planned(store: SweepStore, instance: dg.DagsterInstance, sweep_id: str, params: list[dict]) -> list[str]:
    """A sweep as plan_sweep leaves it: its plan in the store, its trials and itself as partitions."""
    keys = [trial_key(sweep_id, n) for n in range(len(params))]
    spec = SweepSpec.model_validate({**GRID_SPEC, "grid": {"buy_rsi": [p["buy_rsi"] for p in params]},
                                     "budget": len(params)})
    store.write_plan(sweep_id, {
        "sweep_id": sweep_id, "spec": spec.model_dump(mode="json"), "strategy": "FragileRsi",
        "trials": [{"number": n, "key": k, "params": p} for n, (k, p) in enumerate(zip(keys, params))],
        "created": "2026-12-01T00:00:00+00:00", "parent_run_id": None,
    })
    instance.add_dynamic_partitions(SWEEP_TRIALS.name, keys)
    instance.add_dynamic_partitions(SWEEPS.name, [sweep_id])
    return keys


def run_trials_in(instance: dg.DagsterInstance, keys: list[str], failing: set[str]) -> None:
    """Materialise trial partitions in the webserver's instance, failing ``failing``."""

    @dg.asset(key=SWEEP_TRIAL_KEY, partitions_def=SWEEP_TRIALS)
    def sweep_trial(context: dg.AssetExecutionContext) -> None:
        if context.partition_key in failing:
            raise ValueError(f"trial {context.partition_key} raised")

    job = dg.Definitions(assets=[sweep_trial]).resolve_implicit_global_asset_job_def()
    for key in keys:
        job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)


def test_status_and_results_follow_the_trials(api, store, instance):
    keys = planned(store, instance, "api_ranked", [{"buy_rsi": 25}, {"buy_rsi": 30}, {"buy_rsi": 13}, {"buy_rsi": 35}])
    run_trials_in(instance, keys[:3], failing={keys[2]})
    for number, (sharpe, trades) in enumerate([(0.4, 5.0), (1.2, 7.0)]):
        store.write_trial("api_ranked", number, TrialResult(
            keys[number], number, {"buy_rsi": [25, 30][number]}, "ok", [sharpe], {"sharpe": sharpe, "trades": trades},
        ).as_dict())
    store.write_trial("api_ranked", 2, TrialResult(keys[2], 2, {"buy_rsi": 13}, "failed", error="buy_rsi 13 is unlucky").as_dict())

    status = api.sweep("api_ranked")
    assert status["state"] == "running"
    assert (status["planned"], status["materialized"], status["failed"], status["pending"]) == (4, 2, 1, 1)
    assert status["trials"][keys[2]] == "failed" and status["errors"] == {keys[2]: "buy_rsi 13 is unlucky"}

    results = api.sweep_results("api_ranked")
    assert results["complete"] is False and results["objective"] == "sharpe"
    assert results["best_trial"] == keys[1] and results["best_parameters"] == {"buy_rsi": 30}
    assert [(r["rank"], r["trial"], r["status"]) for r in results["trials"]] == [
        (1, keys[1], "ok"), (2, keys[0], "ok"), (None, keys[2], "failed")]
    assert results["trials"][2]["error"] == "buy_rsi 13 is unlucky"


def test_cancel_cancels_queued_runs_and_the_sensor_launches_nothing_more(api, store, instance, graphql_url):
    planned(store, instance, "api_cancel", [{"buy_rsi": 25}, {"buy_rsi": 30}])
    assert [r.tags[SWEEP_TAG] for r in sweep_requests(instance, store) if r.tags.get(SWEEP_TAG) == "api_cancel"]
    # A trial batch the sensor requested, waiting in the run queue.
    batch = DagsterClient(graphql_url).launch_run(SWEEP_JOB, {"ops": {"plan_sweep": {"config": GRID_SPEC}}},
                                                  {SWEEP_TAG: "api_cancel"})

    cancelled = api.cancel_sweep("api_cancel")
    assert cancelled["state"] == "cancelled" and cancelled["cancelled"]["by"] == "quant-1"
    assert queued_run(graphql_url, batch.run_id)["status"] == "CANCELED"
    assert [r for r in sweep_requests(instance, store) if r.tags.get(SWEEP_TAG) == "api_cancel"] == []
    again = httpx.post(f"{api.url}/api/v1/sweeps/api_cancel/cancel", headers=api._http.headers)
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    # Cancelling one still planning: its planning run is cancelled.
    accepted = api.start_sweep({**GRID_SPEC, "sweep_id": "api_cancel_early"})
    assert api.cancel_sweep("api_cancel_early")["state"] == "cancelled"
    assert queued_run(graphql_url, accepted["job_id"])["status"] == "CANCELED"


# The catalog ---------------------------------------------------------------------------------------


def test_the_catalog_lists_every_strategy_and_compares_a_strategys_sweeps(api, api_url, store, instance):
    keys = planned(store, instance, "api_catalog", [{"buy_rsi": 25}, {"buy_rsi": 30}])
    store.write_trial("api_catalog", 1, TrialResult(keys[1], 1, {"buy_rsi": 30}, "ok", [0.9],
                                                    {"sharpe": 0.9, "trades": 4.0}).as_dict())

    entries = {e["name"]: e for e in api.catalog()["items"]}
    assert set(entries) == {"FragileRsi", "Plain"}
    assert entries["Plain"]["sweeps"] == 0 and entries["Plain"]["latest_backtest"] is None
    assert entries["FragileRsi"]["sweeps"] >= 1 and entries["FragileRsi"]["model"] is None
    assert api.catalog_strategy("FragileRsi")["config"] is None  # never materialised in this instance

    rows = api.compare("FragileRsi")["items"]
    sweep = next(r for r in rows if r["id"] == "api_catalog")
    assert sweep["kind"] == "sweep" and sweep["status"] == "running"
    assert sweep["details"]["planned"] == 2 and sweep["at"].startswith("2026-12-01T00:00:00")
    assert {r["kind"] for r in rows} == {"sweep"}  # no backtests or models of this strategy here

    token = bearer(hs256_token())
    unknown = httpx.get(f"{api_url}/api/v1/catalog/strategies/Nope/compare", headers=token)
    assert unknown.status_code == 404 and "Nope" in unknown.json()["detail"]
    assert httpx.get(f"{api_url}/api/v1/catalog/strategies", headers=bearer(hs256_token(scopes=["data:read"]))).status_code == 403


def test_the_catalog_from_the_cli(api_url, store, instance, monkeypatch):
    from click.testing import CliRunner

    from tradai_client import cli

    monkeypatch.setattr(cli.console, "width", 200)  # the tables' columns whole, not cut to a terminal's 80
    planned(store, instance, "api_catalog_cli", [{"buy_rsi": 25}])
    env = {"TRADAI_API_URL": api_url, "TRADAI_API_TOKEN": hs256_token(), "COLUMNS": "200"}
    listed = CliRunner().invoke(cli.main, ["catalog"], env=env, catch_exceptions=False)
    assert listed.exit_code == 0 and "FragileRsi" in listed.output and "Plain" in listed.output
    compared = CliRunner().invoke(cli.main, ["catalog", "FragileRsi", "--compare"], env=env, catch_exceptions=False)
    assert compared.exit_code == 0 and "api_catalog_cli" in compared.output and "sweep" in compared.output
    refused = CliRunner().invoke(cli.main, ["catalog", "--compare"], env=env)
    assert refused.exit_code == 2 and "--compare needs a strategy NAME" in refused.output
    unknown = CliRunner().invoke(cli.main, ["catalog", "Nope"], env=env)
    assert unknown.exit_code == 1 and "Nope" in unknown.output
