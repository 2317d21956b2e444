"""The API's OpenAPI schema, fuzzed with schemathesis in-process (ASGI) with a valid token, against a
real Dagster webserver over the test code location (runs stay queued); then explicit deeply nested and
oversized ``overrides``. No answer may be a 500 or carry a stack trace, and a refused request launches
nothing."""

from __future__ import annotations

import importlib
import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings

from tests.api_support import bearer, dagster_webserver, hs256_settings, hs256_token
from tradai_api.app import create_app
from tradai_api.routes.backtests import ADHOC_JOB, launched_config
from tradai_api.schemas import MAX_OVERRIDES_DEPTH, nesting_depth
from tradai_api.settings import RateLimit

BACKTESTS = "/api/v1/backtests"
MAX_BODY_BYTES = 64 * 1024
EXAMPLES_PER_OPERATION = 10
STACK_TRACE_MARKERS = ("Traceback (most recent call last)", 'File "/', ".py\", line ")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("api-schema")


@pytest.fixture(scope="module")
def graphql_url(root):
    with dagster_webserver(root) as url:
        yield url


@pytest.fixture
def app(root, graphql_url):
    """One per test: the app's lifespan, which each test's client runs, closes its Dagster client."""
    # Generous limits: the run is about answers to odd input, not about 429s (test_api_limits has those).
    unlimited = RateLimit(1_000_000, 1)
    app = create_app(hs256_settings(
        root, dagster_graphql_url=graphql_url, tradai_home=root / "home", rate_limit=unlimited,
        backtest_rate_limit=unlimited, max_body_bytes=MAX_BODY_BYTES,
    ))
    # Import and open the stores once, so that no request waits for a cold start (the transport's
    # timeout is 10 s, the health probe's too).
    app.state.services.market_data.check()
    app.state.services.artifacts.check()
    importlib.import_module("freqtrade.strategy.hyper")  # what a sweep's parameter check reads with
    return app


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


def launched_backtests(app) -> list[str]:
    return [run.run_id for run in app.state.services.dagster.runs(ADHOC_JOB, limit=1000)]


def no_internal_error(ctx, response, case) -> None:
    """A 5xx is only a dependency's failure (502, 503) said in words, never the API's own 500."""
    assert response.status_code != 500, f"500 for {case.method} {case.formatted_path}: {response.text[:500]}"
    if response.status_code > 500:
        detail = json.loads(response.content)["detail"]
        assert isinstance(detail, str) and detail, response.text[:500]


def no_stack_trace(ctx, response, case) -> None:
    text = response.content.decode(errors="replace")
    for marker in STACK_TRACE_MARKERS:
        assert marker not in text, f"{case.method} {case.formatted_path} answered a stack trace: {text[:500]}"


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_answer_is_a_500_or_a_stack_trace(api_schema, mode):
    """Every operation, with inputs that fit the schema (positive) and inputs that do not (negative).
    (schemathesis' pytest plugin cannot parametrize from a fixture under this pytest, so the
    operations are walked here; Hypothesis draws the cases.)"""
    headers = bearer(hs256_token(subject="schemathesis"))
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def answers_well(case):
            case.call_and_validate(
                headers=headers, checks=[no_internal_error, no_stack_trace, schemathesis.checks.response_schema_conformance],
            )

        try:
            answers_well()
        except Exception as exc:  # noqa: BLE001 (collected and reported below, with every operation's)
            causes = getattr(exc, "exceptions", [exc])  # Hypothesis groups what it found
            failures.append(f"{operation.label}: " + "; ".join(f"{type(c).__name__}: {c}" for c in causes))
    assert not failures, "\n\n".join(failures)


# Explicit cases: deeply nested and oversized overrides ----------------------------------------------


def submit(client, overrides, **extra) -> object:
    body = json.dumps({"strategy": "SampleStrategy", "overrides": overrides, **extra})
    return client.post(BACKTESTS, content=body, headers={**bearer(hs256_token()), "Content-Type": "application/json"})


def nested(depth: int, leaf=1) -> dict:
    """``depth`` levels of objects under the free-form exchange.ccxt_config (the overrides included)."""
    value = leaf
    for _ in range(depth - 2):
        value = {"options": value}
    return {"exchange": {"ccxt_config": value}}


def test_overrides_at_the_depth_limit_reach_dagster_intact(client, app):
    overrides = nested(MAX_OVERRIDES_DEPTH - 1, leaf=[1, 2])  # the list is the last level
    assert nesting_depth(overrides) == MAX_OVERRIDES_DEPTH
    response = submit(client, overrides)
    assert response.status_code == 202, response.text
    run = app.state.services.dagster.run(response.json()["job_id"])
    assert launched_config(run)["overrides"] == overrides


@pytest.mark.parametrize("depth", [MAX_OVERRIDES_DEPTH + 1, 200, 900])
def test_overrides_nested_too_deep_are_422_and_launch_nothing(client, app, depth):
    before = launched_backtests(app)
    response = submit(client, nested(depth))
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "overrides"]
    assert f"nests {depth} levels deep; at most {MAX_OVERRIDES_DEPTH}" in error["msg"]
    assert launched_backtests(app) == before


def test_json_nested_past_the_parser_is_422_and_launches_nothing(client, app):
    before = launched_backtests(app)
    depth = 20_000  # 40 kB of brackets: under the body limit, past any JSON parser's recursion limit
    body = '{"strategy": "SampleStrategy", "overrides": {"x": ' + "[" * depth + "]" * depth + "}}"
    assert len(body) < MAX_BODY_BYTES
    response = client.post(BACKTESTS, content=body, headers={**bearer(hs256_token()), "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"] == [{"loc": ["body"], "msg": "JSON nests too deeply to parse", "type": "json_too_deep"}]
    assert launched_backtests(app) == before


def test_oversized_overrides_are_413_and_launch_nothing(client, app):
    before = launched_backtests(app)
    response = submit(client, {"exchange": {"pair_whitelist": [f"PAIR{n}/BTC" for n in range(10_000)]}})
    assert response.status_code == 413
    assert response.json()["detail"] == f"request body over {MAX_BODY_BYTES} bytes"
    assert launched_backtests(app) == before


def test_wide_unknown_overrides_are_422_naming_each_key_and_launch_nothing(client, app):
    before = launched_backtests(app)
    keys = [f"not_a_freqtrade_key_{n}" for n in range(2000)]
    response = submit(client, dict.fromkeys(keys, 1))
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == keys
    assert launched_backtests(app) == before
