"""Authentication and scopes: HS256 with a shared secret, and RS256 against a JWKS served on 127.0.0.1."""

import json
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from tests.api_support import SECRET, UNREACHABLE_GRAPHQL, JwksServer, RsaKey, bearer, hs256_settings, hs256_token
from tradai_api.app import create_app
from tradai_api.auth import ADMIN, ALL_SCOPES, BACKTESTS_READ, DATA_READ
from tradai_api.settings import DEFAULT_AUDIENCE, ApiSettings, RateLimit, SettingsError

ROUTE = "/api/v1/strategies"  # answers from the strategy files alone: no Dagster needed
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
AUDIENCE = "tradai-api-client"


def assert_refused(response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert reason in response.json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# HS256 --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs256(stores):
    with TestClient(create_app(hs256_settings(stores))) as client:
        yield client


def test_hs256_valid_token_is_accepted(hs256):
    response = hs256.get(ROUTE, headers=bearer(hs256_token()))
    assert response.status_code == 200
    assert "SampleStrategy" in {s["name"] for s in response.json()["items"]}


def test_anonymous_health_says_only_whether_each_component_answers(hs256, stores):
    response = hs256.get("/api/v1/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "degraded"  # nothing listens on the test's GraphQL URL
    assert health["checks"]["dagster"] == {"ok": False}
    # The stores may not answer within the probe's deadline on a loaded machine: only the shape is sure.
    assert {name: list(check) for name, check in health["checks"].items()} == {
        "dagster": ["ok"], "arcticdb": ["ok"], "mlflow": ["ok"],
    }
    for internal in (UNREACHABLE_GRAPHQL, "127.0.0.1", str(stores), "lmdb://", "sqlite://", "Error", "refused"):
        assert internal not in response.text


def test_health_details_need_the_admin_scope(hs256):
    admin = hs256.get("/api/v1/health", headers=bearer(hs256_token(scopes=[ADMIN])))
    assert admin.status_code == 200
    checks = admin.json()["checks"]
    assert checks["dagster"]["ok"] is False
    assert UNREACHABLE_GRAPHQL in checks["dagster"]["detail"] and "unreachable" in checks["dagster"]["detail"]
    assert all(c["detail"] and isinstance(c["latency_ms"], float) for c in checks.values())
    every_other_scope = [s for s in ALL_SCOPES if s != ADMIN]
    for headers in (bearer(hs256_token(scopes=every_other_scope)), bearer(hs256_token(scopes=[]))):
        ordinary = hs256.get("/api/v1/health", headers=headers)
        assert ordinary.status_code == 200
        assert all(list(check) == ["ok"] for check in ordinary.json()["checks"].values())


def test_health_refuses_a_bad_token_rather_than_ignoring_it(hs256):
    for token in (hs256_token(scopes=[ADMIN], ttl=-120), hs256_token(scopes=[ADMIN], audience="another-service"), "not-a-jwt"):
        response = hs256.get("/api/v1/health", headers=bearer(token))
        assert response.status_code == 401 and "checks" not in response.json()
        assert UNREACHABLE_GRAPHQL not in response.text


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing bearer token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "malformed Authorization header"),
    ({"Authorization": "Bearer"}, "malformed Authorization header"),
    ({"Authorization": "Bearer not-a-jwt"}, "malformed token"),
    ({"Authorization": "Bearer a.b.c"}, "malformed token"),
])
def test_hs256_missing_or_malformed(hs256, headers, reason):
    response = hs256.get(ROUTE, headers=headers)
    assert_refused(response, reason)
    if not headers:
        assert response.headers["WWW-Authenticate"] == "Bearer"  # RFC 6750: no error code without credentials
    else:
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_hs256_expired(hs256):
    assert_refused(hs256.get(ROUTE, headers=bearer(hs256_token(ttl=-120))), "token expired")


def test_hs256_wrong_secret(hs256):
    token = hs256_token(secret="another-secret-0123456789abcdef012345")
    assert_refused(hs256.get(ROUTE, headers=bearer(token)), "signature does not verify")


def test_hs256_alg_none_and_other_algorithms_are_refused(hs256):
    unsigned = jwt.encode({"sub": "x", "scope": BACKTESTS_READ, "exp": time.time() + 60}, None, algorithm="none")
    assert_refused(hs256.get(ROUTE, headers=bearer(unsigned)), "invalid token")
    hs512 = hs256_token(algorithm="HS512")  # the right secret, the wrong algorithm
    assert_refused(hs256.get(ROUTE, headers=bearer(hs512)), "invalid token")


def test_hs256_token_without_exp_or_sub(hs256):
    no_exp = jwt.encode({"sub": "x", "scope": BACKTESTS_READ}, SECRET, algorithm="HS256")
    assert_refused(hs256.get(ROUTE, headers=bearer(no_exp)), "exp")
    no_sub = jwt.encode({"scope": BACKTESTS_READ, "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert_refused(hs256.get(ROUTE, headers=bearer(no_sub)), "sub")


def test_hs256_insufficient_scope(hs256):
    response = hs256.get(ROUTE, headers=bearer(hs256_token(scopes=[DATA_READ])))
    assert response.status_code == 403
    assert "backtests:read" in response.json()["detail"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    # Reading does not allow running.
    launch = hs256.post("/api/v1/backtests", json={"strategy": "SampleStrategy"}, headers=bearer(hs256_token(scopes=[BACKTESTS_READ])))
    assert launch.status_code == 403 and "backtests:run" in launch.json()["detail"]


def test_hs256_audience_is_checked_by_default(hs256):
    assert_refused(hs256.get(ROUTE, headers=bearer(hs256_token(audience="another-service"))), "audience is not accepted")
    now = int(time.time())
    no_audience = jwt.encode({"sub": "x", "scope": BACKTESTS_READ, "exp": now + 60}, SECRET, algorithm="HS256")
    assert_refused(hs256.get(ROUTE, headers=bearer(no_audience)), "no audience")
    # The same rules as for Cognito's tokens: a list of audiences, or client_id without aud.
    for claims in ({"aud": ["another-service", DEFAULT_AUDIENCE]}, {"client_id": DEFAULT_AUDIENCE}):
        token = jwt.encode({"sub": "x", "scope": BACKTESTS_READ, "exp": now + 60, **claims}, SECRET, algorithm="HS256")
        assert hs256.get(ROUTE, headers=bearer(token)).status_code == 200, claims
    wrong_client = jwt.encode({"sub": "x", "scope": BACKTESTS_READ, "exp": now + 60, "client_id": "another-service"},
                              SECRET, algorithm="HS256")
    assert_refused(hs256.get(ROUTE, headers=bearer(wrong_client)), "audience is not accepted")
    malformed = jwt.encode({"sub": "x", "scope": BACKTESTS_READ, "exp": now + 60, "aud": [DEFAULT_AUDIENCE, 7]},
                           SECRET, algorithm="HS256")
    assert_refused(hs256.get(ROUTE, headers=bearer(malformed)), "audience must be a string")


def test_hs256_issuer_and_audience_when_configured(stores):
    settings = hs256_settings(stores, jwt_issuer="tradai-dev", jwt_audience="tradai-api-staging")
    with TestClient(create_app(settings)) as client:
        good = hs256_token(issuer="tradai-dev", audience="tradai-api-staging")
        assert client.get(ROUTE, headers=bearer(good)).status_code == 200
        assert_refused(client.get(ROUTE, headers=bearer(hs256_token(issuer="evil", audience="tradai-api-staging"))), "issuer")
        assert_refused(client.get(ROUTE, headers=bearer(hs256_token(audience="tradai-api-staging"))), "iss")
        assert_refused(client.get(ROUTE, headers=bearer(hs256_token(issuer="tradai-dev"))), "audience is not accepted")


def test_settings_refuse_a_short_secret_and_incomplete_jwks_mode():
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        ApiSettings(auth_mode="hs256", jwt_secret="short")
    with pytest.raises(SettingsError, match="TRADAI_API_JWKS_URL, TRADAI_API_JWT_ISSUER"):
        ApiSettings(auth_mode="jwks", jwt_audience="x")
    with pytest.raises(SettingsError, match="TRADAI_API_AUTH"):
        ApiSettings(auth_mode="basic")
    with pytest.raises(SettingsError, match="TRADAI_API_JWT_AUDIENCE must not be empty"):
        ApiSettings(auth_mode="hs256", jwt_secret=SECRET, jwt_audience="")
    with pytest.raises(SettingsError, match="needs TRADAI_API_JWT_AUDIENCE"):
        ApiSettings.from_environment({"TRADAI_API_AUTH": "jwks", "TRADAI_API_JWKS_URL": "https://idp.example/jwks.json",
                                      "TRADAI_API_JWT_ISSUER": ISSUER})
    assert ApiSettings.from_environment({"TRADAI_API_JWT_SECRET": SECRET}).audience == DEFAULT_AUDIENCE


def test_every_bad_environment_variable_is_named_in_one_error(monkeypatch):
    environ = {"TRADAI_API_JWT_SECRET": SECRET, "TRADAI_API_RATE_LIMIT": "lots", "TRADAI_API_MAX_BODY_BYTES": "0",
               "TRADAI_API_HEARTBEAT_MAX_AGE_SECONDS": "soon", "TRADAI_API_WARM_UP": "false"}
    with pytest.raises(SettingsError) as caught:
        ApiSettings.from_environment(environ)
    message = str(caught.value)
    assert "TRADAI_API_RATE_LIMIT='lots': expected REQUESTS/PERIOD" in message
    assert "TRADAI_API_MAX_BODY_BYTES='0': Input should be greater than or equal to 1" in message
    assert "TRADAI_API_HEARTBEAT_MAX_AGE_SECONDS='soon'" in message
    good = ApiSettings.from_environment({**environ, "TRADAI_API_RATE_LIMIT": "5/1m", "TRADAI_API_MAX_BODY_BYTES": "10",
                                         "TRADAI_API_HEARTBEAT_MAX_AGE_SECONDS": "60"})
    assert (good.rate_limit, good.max_body_bytes, good.heartbeat_max_age_seconds, good.warm_up) == (
        RateLimit(5, 60), 10, 60.0, False)
    # Settings built in code take only what they are given, whatever the process environment holds.
    monkeypatch.setenv("TRADAI_API_AUTH", "jwks")
    assert ApiSettings(jwt_secret=SECRET).auth_mode == "hs256"


# RS256 against a JWKS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def identity_provider():
    with JwksServer([RsaKey("key-1")]) as server:
        yield server


@pytest.fixture(scope="module")
def rs256(identity_provider, stores):
    settings = hs256_settings(
        stores, auth_mode="jwks", jwt_secret=None, jwks_url=identity_provider.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE,
        scope_prefix="tradai/", jwks_min_refetch_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def jwks_settings(stores, jwks_url: str) -> ApiSettings:
    return hs256_settings(stores, auth_mode="jwks", jwt_secret=None, jwks_url=jwks_url, jwt_issuer=ISSUER,
                          jwt_audience=AUDIENCE, scope_prefix="tradai/", jwks_min_refetch_seconds=0)


def claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
            "scope": "tradai/backtests:read tradai/data:read", **overrides}


def test_rs256_valid_id_token_and_cognito_access_token(rs256, identity_provider):
    key = identity_provider.keys[0]
    assert rs256.get(ROUTE, headers=bearer(key.token(claims()))).status_code == 200
    # Cognito access tokens carry the app client in client_id and no aud.
    access = claims(client_id=AUDIENCE, token_use="access")
    del access["aud"]
    assert rs256.get(ROUTE, headers=bearer(key.token(access))).status_code == 200


def test_rs256_expired(rs256, identity_provider):
    token = identity_provider.keys[0].token(claims(exp=int(time.time()) - 120))
    assert_refused(rs256.get(ROUTE, headers=bearer(token)), "token expired")


def test_rs256_wrong_signature(rs256):
    impostor = RsaKey("key-1")  # same key id, another private key
    assert_refused(rs256.get(ROUTE, headers=bearer(impostor.token(claims()))), "signature does not verify")


def test_rs256_wrong_issuer_and_audience(rs256, identity_provider):
    key = identity_provider.keys[0]
    assert_refused(rs256.get(ROUTE, headers=bearer(key.token(claims(iss="https://evil.example")))), "issuer")
    assert_refused(rs256.get(ROUTE, headers=bearer(key.token(claims(aud="someone-else")))), "audience is not accepted")
    assert_refused(rs256.get(ROUTE, headers=bearer(key.token(claims(aud=["someone-else"])))), "audience is not accepted")
    access = claims(client_id="someone-else")
    del access["aud"]
    assert_refused(rs256.get(ROUTE, headers=bearer(key.token(access))), "audience is not accepted")


def test_rs256_missing_audience(rs256, identity_provider):
    anonymous = claims()
    del anonymous["aud"]
    assert_refused(rs256.get(ROUTE, headers=bearer(identity_provider.keys[0].token(anonymous))), "no audience")


def test_rs256_unknown_kid_refetches_then_refuses(rs256, identity_provider):
    stranger = RsaKey("key-unknown")
    before = identity_provider.fetches
    assert_refused(rs256.get(ROUTE, headers=bearer(stranger.token(claims()))), "unknown key id 'key-unknown'")
    assert identity_provider.fetches == before + 1


def test_rs256_rotated_key_is_found_by_refetching(rs256, identity_provider):
    rotated = RsaKey("key-2")
    identity_provider.keys.append(rotated)
    try:
        assert rs256.get(ROUTE, headers=bearer(rotated.token(claims()))).status_code == 200
    finally:
        identity_provider.keys.remove(rotated)


def test_rs256_refuses_hs256_and_missing_kid(rs256, identity_provider):
    # The classic confusion attack: an HMAC token keyed with the public key.
    hs = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "key-1"})
    assert_refused(rs256.get(ROUTE, headers=bearer(hs)), "expected RS256")
    no_kid = jwt.encode(claims(), identity_provider.keys[0].private, algorithm="RS256")
    assert_refused(rs256.get(ROUTE, headers=bearer(no_kid)), "no key id")


def test_rs256_insufficient_scope_and_foreign_prefix(rs256, identity_provider):
    key = identity_provider.keys[0]
    response = rs256.get(ROUTE, headers=bearer(key.token(claims(scope="tradai/data:read"))))
    assert response.status_code == 403
    # Another resource server's scope of the same name grants nothing here.
    response = rs256.get(ROUTE, headers=bearer(key.token(claims(scope="other-api/backtests:read"))))
    assert response.status_code == 403


def test_rs256_health_details_need_the_prefixed_admin_scope(rs256, identity_provider):
    key = identity_provider.keys[0]
    admin = rs256.get("/api/v1/health", headers=bearer(key.token(claims(scope="tradai/admin"))))
    assert "detail" in admin.json()["checks"]["dagster"]
    for scope in ("tradai/backtests:read", "other-api/admin"):
        ordinary = rs256.get("/api/v1/health", headers=bearer(key.token(claims(scope=scope))))
        assert ordinary.status_code == 200 and ordinary.json()["checks"]["dagster"] == {"ok": False}


def test_rs256_unknown_kids_do_not_flood_the_identity_provider(identity_provider, stores):
    settings = hs256_settings(stores, auth_mode="jwks", jwt_secret=None, jwks_url=identity_provider.url, jwt_issuer=ISSUER,
                              jwt_audience=AUDIENCE, scope_prefix="tradai/", jwks_min_refetch_seconds=300)
    with TestClient(create_app(settings)) as client:
        before = identity_provider.fetches
        for n in range(5):
            assert client.get(ROUTE, headers=bearer(RsaKey(f"made-up-{n}").token(claims()))).status_code == 401
        assert identity_provider.fetches == before + 1


def test_rs256_identity_provider_down_is_503_not_401(stores):
    settings = hs256_settings(stores, auth_mode="jwks", jwt_secret=None, jwks_url="http://127.0.0.1:9/jwks.json",
                              jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with TestClient(create_app(settings)) as client:
        response = client.get(ROUTE, headers=bearer(RsaKey("key-1").token(claims())))
    assert response.status_code == 503
    assert "cannot read the JWKS" in response.json()["detail"]


def test_rs256_unreadable_key_set_is_503_and_an_hmac_key_verifies_nothing(stores):
    token = RsaKey("key-1").token(claims())
    with JwksServer([], body=b"<html>maintenance</html>") as garbage:
        with TestClient(create_app(jwks_settings(stores, garbage.url))) as client:
            response = client.get(ROUTE, headers=bearer(token))
        assert response.status_code == 503 and "cannot read the JWKS" in response.json()["detail"]
    hmac_set = json.dumps({"keys": [{"kty": "oct", "kid": "key-1", "use": "sig", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
                                    RsaKey("key-2").jwk()]}).encode()
    with JwksServer([], body=hmac_set) as mixed:
        with TestClient(create_app(jwks_settings(stores, mixed.url))) as client:
            assert_refused(client.get(ROUTE, headers=bearer(token)), "not an RSA key")
