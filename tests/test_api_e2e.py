"""The API and the CLI over real HTTP against a real local stack: ``dagster dev`` (webserver, daemon and
run queue) on a TRADAI_HOME loaded with the sample, whose runs really execute, and the API under
uvicorn. Several runs are launched at once at the start so that they execute side by side."""

import subprocess
import time
import uuid

import httpx
import pytest

from tests.api_support import local_stack
from tests.servers import BIN
from tradai_client.client import ApiError, TradaiClient

pytestmark = pytest.mark.timeout(600)

TIMERANGE = "20180120-20180123"
RUN_TIMEOUT = 480


pytestmark = pytest.mark.integration  # every test here talks to a running stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with local_stack(tmp_path_factory.mktemp("stack"), ["SampleStrategy.py", "EmaCross.py"]) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack):
    with TradaiClient(stack.api_url, stack.token) as client:
        yield client


@pytest.fixture(scope="module")
def launched(api):
    """Jobs launched together before the tests look at them."""
    key = f"e2e-{uuid.uuid4()}"
    return {
        "key": key,
        "backtest": api.submit_backtest("SampleStrategy", timerange=TIMERANGE, pairs=["ETH/BTC", "LTC/BTC", "XMR/BTC"],
                                        overrides={"max_open_trades": 2}, idempotency_key=key),
        "outside": api.submit_backtest("EmaCross", timerange="20190101-20190201"),
        "sync": api.sync(exchange="binance", market_type="spot", start="2018-01-29", end="2018-01-30"),
    }


def mlflow_run(stack, run_id: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{stack.home / 'mlflow.db'}").get_run(run_id)


def test_health_reports_every_component_reachable(api):
    health = api.health()
    assert health["status"] == "ok", health
    assert set(health["checks"]) == {"dagster", "arcticdb", "mlflow"}


def test_backtest_end_to_end_metrics_equal_the_mlflow_run(api, stack, launched):
    accepted = launched["backtest"]
    assert accepted["status"] == "QUEUED"  # the instance's run queue took it
    job = api.wait(accepted["job_id"], timeout=RUN_TIMEOUT)
    assert job["status"] == "SUCCEEDED", job
    assert job["request"]["pairs"] == ["ETH/BTC", "LTC/BTC", "XMR/BTC"]
    assert job["timerange"] == TIMERANGE

    recorded = mlflow_run(stack, job["mlflow"]["run_id"])
    assert recorded.data.tags["dagster.run_id"] == job["job_id"]
    assert recorded.data.params["pairs"] == '["ETH/BTC", "LTC/BTC", "XMR/BTC"]'
    assert job["metrics"] == recorded.data.metrics
    assert job["metrics"]["trades"] > 0

    trades = api.trades(job["job_id"])
    assert len(trades) == job["metrics"]["trades"]
    assert {t["pair"] for t in trades} <= {"ETH/BTC", "LTC/BTC", "XMR/BTC"}
    equity = api.equity(job["job_id"])
    assert equity["currency"] == "BTC" and len(equity["points"]) == len(trades) + 1
    gained = equity["points"][-1]["equity"] - equity["starting_balance"]
    assert gained == pytest.approx(job["metrics"]["profit_total_abs"], abs=1e-9)
    frame = api.trades_frame(job["job_id"])
    assert len(frame) == len(trades) and str(frame["close_date"].dt.tz) == "UTC"


def test_idempotency_key_returns_the_same_job_and_launches_nothing(api, stack, launched):
    first = launched["backtest"]
    again = httpx.post(
        f"{stack.api_url}/api/v1/backtests",
        json={"strategy": "SampleStrategy", "timerange": TIMERANGE, "pairs": ["ETH/BTC", "LTC/BTC", "XMR/BTC"],
              "overrides": {"max_open_trades": 2}},
        headers={"Authorization": f"Bearer {stack.token}", "Idempotency-Key": launched["key"]},
    )
    assert again.status_code == 202 and again.json()["job_id"] == first["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(ApiError) as conflict:
        api.submit_backtest("SampleStrategy", timerange=TIMERANGE, idempotency_key=launched["key"])
    assert conflict.value.status == 409
    runs = httpx.post(stack.graphql_url, json={"query": """{ runsOrError(filter: {tags: [{key: "tradai/idempotency_key", value: "%s"}]})
        { ... on Runs { results { runId } } } }""" % launched["key"]}).json()
    assert [r["runId"] for r in runs["data"]["runsOrError"]["results"]] == [first["job_id"]]


def test_a_run_that_fails_reports_why(api, launched):
    job = api.wait(launched["outside"]["job_id"], timeout=RUN_TIMEOUT)
    assert job["status"] == "FAILED"
    assert "20190101-20190201" in job["error"] and "reaches outside the stored candles" in job["error"]
    assert job["metrics"] is None
    with pytest.raises(ApiError) as not_finished:
        api.equity(job["job_id"])
    assert not_finished.value.status == 409 and "FAILED" in str(not_finished.value.detail)


def test_list_filters_and_pages(api, launched):
    api.wait(launched["backtest"]["job_id"], timeout=RUN_TIMEOUT)
    mine = api.backtests(strategy="SampleStrategy", status="SUCCEEDED")
    assert launched["backtest"]["job_id"] in [j["job_id"] for j in mine["items"]]
    assert {j["strategy"] for j in mine["items"]} == {"SampleStrategy"}
    first = api.backtests(limit=1)
    assert len(first["items"]) == 1 and first["next_cursor"] == first["items"][0]["job_id"]
    second = api.backtests(limit=1, cursor=first["next_cursor"])
    assert second["items"][0]["job_id"] != first["items"][0]["job_id"]
    assert api.backtests(strategy="EmaCross", status=["SUCCEEDED"])["items"] == []


def test_cancel(api):
    job = api.submit_backtest("EmaCross", timerange=TIMERANGE)
    cancelled = api.cancel(job["job_id"])
    assert cancelled["status"] in ("CANCELING", "CANCELED")
    final = api.wait(job["job_id"], timeout=RUN_TIMEOUT, poll_seconds=0.5)
    assert final["status"] == "CANCELED"
    with pytest.raises(ApiError) as again:
        api.cancel(job["job_id"])
    assert again.value.status == 409


def test_unknown_job_is_404(api):
    with pytest.raises(ApiError) as missing:
        api.backtest(str(uuid.uuid4()))
    assert missing.value.status == 404


def test_strategy_detail_has_the_latest_backtest_metrics(api, launched):
    job = api.wait(launched["backtest"]["job_id"], timeout=RUN_TIMEOUT)
    detail = api.strategy("SampleStrategy")
    latest = detail["latest_backtest"]
    assert latest["kind"] == "adhoc" and latest["dagster_run_id"] == job["job_id"]
    assert latest["metrics"] == job["metrics"] and latest["mlflow"]["run_id"] == job["mlflow"]["run_id"]
    assert detail["file"] == "SampleStrategy.py"


def test_data_symbols_freshness_and_sync(api, launched):
    spot = {m["market_type"]: m for m in api.symbols()}["spot"]
    assert "ETH/BTC|5m|spot" in spot["stored_symbols"]
    series = {(s["pair"], s["timeframe"], s["candle_type"]): s for s in api.freshness()["series"]}
    eth = series[("ETH/BTC", "5m", "spot")]
    assert eth["last_candle"].startswith("2018-01-30") and eth["age_seconds"] > 0

    run = launched["sync"]["runs"][0]
    assert (run["job"], run["start"], run["end"]) == ("sync_binance_spot", "2018-01-29", "2018-01-30")
    final = api.wait(run["job_id"], timeout=RUN_TIMEOUT, path="/api/v1/data/sync/{job_id}")
    assert final["status"] == "SUCCEEDED", final
    by_default = api.sync()  # both sample entries ended long ago
    assert by_default["runs"] == [] and {s["market_type"] for s in by_default["skipped"]} == {"spot", "futures"}


def test_cli_new_strategy_backtests_right_away(stack):
    created = stack.cli("strategy", "new", "FreshRsi", "--template", "rsi")
    assert created.returncode == 0, created.stderr
    assert (stack.strategies / "FreshRsi.py").exists()
    started = time.monotonic()
    ran = stack.cli("backtest", "FreshRsi", "--timerange", TIMERANGE, "--pairs", "ETH/BTC,LTC/BTC", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "FreshRsi SUCCEEDED" in ran.stdout and "profit_total_abs" in ran.stdout and "MLflow run" in ran.stdout
    print(f"tradai backtest --wait took {time.monotonic() - started:.0f} s")
    job_id = ran.stdout.split()[1]

    shown = stack.cli("backtests", "show", job_id)
    assert shown.returncode == 0 and "SUCCEEDED" in shown.stdout and "winrate" in shown.stdout
    listed = stack.cli("backtests", "list", "--strategy", "FreshRsi")
    assert listed.returncode == 0 and job_id in listed.stdout
    freshness = stack.cli("data", "freshness")
    assert freshness.returncode == 0 and "ETH/BTC" in freshness.stdout


def test_cli_reports_api_errors_and_exit_status(stack):
    unknown = stack.cli("backtest", "NoSuchStrategy")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr and "NoSuchStrategy" in unknown.stderr
    env = {k: v for k, v in stack.env.items() if k != "TRADAI_API_TOKEN"}
    refused = subprocess.run([str(BIN / "tradai"), "backtests", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "tradai token" in refused.stderr
