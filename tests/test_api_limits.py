"""Rate limits, body size, and validation: everything refused before a run could be launched."""

import http.client
import json
import socket
import threading
import time

import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.api_support import bearer, hs256_settings, hs256_token
from tests.servers import free_port
from tradai_api.app import create_app
from tradai_api.ratelimit import RateLimiter
from tradai_api.settings import RateLimit, SettingsError

BACKTESTS = "/api/v1/backtests"


@pytest.fixture(scope="module")
def api(stores):
    with TestClient(create_app(hs256_settings(stores))) as client:
        yield client


@pytest.fixture
def headers():
    return bearer(hs256_token())


# Rate limits --------------------------------------------------------------------------------------


def test_rate_limit_parsing():
    assert RateLimit.parse("100/5m", "X") == RateLimit(100, 300)
    assert RateLimit.parse("10/1s", "X") == RateLimit(10, 1)
    assert RateLimit.parse("100/300", "X") == RateLimit(100, 300)
    assert RateLimit.parse("3/h", "X") == RateLimit(3, 3600)
    with pytest.raises(SettingsError, match="TRADAI_API_RATE_LIMIT"):
        RateLimit.parse("lots", "TRADAI_API_RATE_LIMIT")


def test_token_bucket_refills_evenly():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limit = {"r": RateLimit(2, 10)}
    assert limiter.acquire("a", limit) is None and limiter.acquire("a", limit) is None
    assert limiter.acquire("a", limit) == pytest.approx(5.0)
    assert limiter.acquire("b", limit) is None  # per client
    now[0] = 5.0
    assert limiter.acquire("a", limit) is None


def limited_client(settings, clock) -> TestClient:
    """A client of an app whose rate limiter reads the test's clock."""
    client = TestClient(create_app(settings))
    client.app.state.services.limiter = RateLimiter(clock=clock.time)
    return client


def test_requests_per_client_get_429_with_retry_after(stores, clock):
    settings = hs256_settings(stores, rate_limit=RateLimit(5, 300))
    with limited_client(settings, clock) as client:
        alice, bob = bearer(hs256_token(subject="alice")), bearer(hs256_token(subject="bob"))
        for _ in range(5):
            assert client.get("/api/v1/strategies", headers=alice).status_code == 200
        refused = client.get("/api/v1/strategies", headers=alice)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"  # one request per 60 s refills
        assert client.get("/api/v1/strategies", headers=bob).status_code == 200  # another client's bucket
        clock.advance(60)
        assert client.get("/api/v1/strategies", headers=alice).status_code == 200


def test_backtest_launches_have_their_own_faster_limit(stores, clock):
    settings = hs256_settings(stores, backtest_rate_limit=RateLimit(3, 60))
    with limited_client(settings, clock) as client:
        headers = bearer(hs256_token())
        # Unknown strategies are refused after the limit is checked: no run is ever launched here.
        for _ in range(3):
            assert client.post(BACKTESTS, json={"strategy": "Nope"}, headers=headers).status_code == 404
        refused = client.post(BACKTESTS, json={"strategy": "Nope"}, headers=headers)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "20"
        assert client.get("/api/v1/strategies", headers=headers).status_code == 200


def test_failed_authentication_is_rate_limited_by_address(stores, clock):
    with limited_client(hs256_settings(stores, rate_limit=RateLimit(3, 60)), clock) as client:
        statuses = [client.get("/api/v1/strategies", headers=bearer("garbage")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_health_is_rate_limited_by_address(stores, clock):
    with limited_client(hs256_settings(stores, rate_limit=RateLimit(1, 60)), clock) as client:
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/v1/health").status_code == 429


# Body size ----------------------------------------------------------------------------------------


def test_oversized_body_is_refused_by_content_length(stores):
    with TestClient(create_app(hs256_settings(stores, max_body_bytes=1024))) as client:
        body = json.dumps({"strategy": "SampleStrategy", "overrides": {"x": "y" * 2000}})
        response = client.post(BACKTESTS, content=body, headers={**bearer(hs256_token()), "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "over 1024 bytes" in response.json()["detail"]


@pytest.mark.integration
def test_oversized_streamed_body_is_refused_while_reading(stores):
    """Chunked transfer without Content-Length, over a real socket."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(hs256_settings(stores, max_body_bytes=1024)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, f"the API did not start on port {port}"
            threading.Event().wait(0.05)
        # The whole chunked request goes out in one write: the server answers 413 and closes as soon
        # as it has read past the limit, and a client still writing then would only see a broken pipe.
        chunks = [b'{"strategy": "SampleStrategy", "overrides": {"x": "' + b"y" * 512 for _ in range(4)]
        headers = {**bearer(hs256_token()), "Content-Type": "application/json", "Transfer-Encoding": "chunked",
                   "Host": f"127.0.0.1:{port}"}
        request = f"POST {BACKTESTS} HTTP/1.1\r\n".encode() + b"".join(
            f"{name}: {value}\r\n".encode() for name, value in headers.items()
        ) + b"\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(request)
            response = http.client.HTTPResponse(raw)
            response.begin()
            assert response.status == 413
            assert "over 1024 bytes" in json.loads(response.read())["detail"]
            assert response.getheader("Content-Length") is not None
        # Bodies under the limit still reach the application whole.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        small = (part for part in (b'{"strategy": ', b'"Nope"}'))
        connection.request("POST", BACKTESTS, body=small, encode_chunked=True,
                           headers={**bearer(hs256_token()), "Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 404 and "Nope" in json.loads(response.read())["detail"]
        connection.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Validation ---------------------------------------------------------------------------------------


def test_unknown_strategy_is_404_naming_it(api, headers):
    response = api.post(BACKTESTS, json={"strategy": "NoSuchStrategy"}, headers=headers)
    assert response.status_code == 404
    assert "'NoSuchStrategy'" in response.json()["detail"] and "SampleStrategy" in response.json()["detail"]
    assert api.get("/api/v1/strategies/NoSuchStrategy", headers=headers).status_code == 404


def field_errors(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {".".join(str(p) for p in e["loc"][1:]): e["msg"] for e in response.json()["detail"]}


def test_malformed_body_is_422_with_field_errors(api, headers):
    errors = field_errors(api.post(BACKTESTS, json={"pairs": ["eth/btc"], "timeframe": "5 minutes", "surprise": 1}, headers=headers))
    assert set(errors) == {"strategy", "pairs.0", "timeframe", "surprise"}
    assert "Field required" in errors["strategy"]
    not_json = api.post(BACKTESTS, content=b"{strategy:", headers={**headers, "Content-Type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("timerange, message", [
    ("2018-01-01", "expected YYYYMMDD-YYYYMMDD"),
    ("20180231-20180301", "not a calendar date"),
    ("20180120-20180110", "the end must be after the start"),
    ("20180120-20180120", "the end must be after the start"),
])
def test_invalid_timerange_is_422(api, headers, timerange, message):
    errors = field_errors(api.post(BACKTESTS, json={"strategy": "SampleStrategy", "timerange": timerange}, headers=headers))
    assert message in errors["timerange"]


def test_unknown_freqtrade_override_is_422_naming_the_key(api, headers):
    response = api.post(BACKTESTS, json={"strategy": "SampleStrategy", "overrides": {"stake_amout": 1, "exchange": {"nme": "x"}}},
                        headers=headers)
    errors = field_errors(response)
    assert set(errors) == {"overrides.stake_amout", "overrides.exchange.nme"}


def test_strategy_that_cannot_run_is_422(stores, tmp_path):
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "Broken.py").write_text("from freqtrade.strategy import IStrategy\nclass Broken(IStrategy)\n")
    with TestClient(create_app(hs256_settings(stores, strategies_dir=strategies))) as client:
        response = client.post(BACKTESTS, json={"strategy": "Broken"}, headers=bearer(hs256_token()))
    assert response.status_code == 422
    errors = field_errors(response)
    assert set(errors) == {"strategy"}
    assert "Broken.py" in errors["strategy"] and "cannot be parsed" in errors["strategy"]


def test_bad_idempotency_key_and_job_id_are_422(api, headers):
    response = api.post(BACKTESTS, json={"strategy": "SampleStrategy"}, headers={**headers, "Idempotency-Key": "has space"})
    assert response.status_code == 422
    assert api.get(f"{BACKTESTS}/not-a-run-id", headers=headers).status_code == 422


def test_dagster_down_is_503_with_the_reason(api, headers):
    response = api.get(BACKTESTS, headers=headers)
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"] and response.headers["Retry-After"]
