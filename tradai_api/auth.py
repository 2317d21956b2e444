"""Bearer JWTs: HS256 with a shared secret locally, RS256 against an identity provider's JWKS in AWS.

Every route but health needs a token; the ``scope`` claim (space-separated, OAuth 2 style) says what
it may do. A token is refused (401) when it is missing, not a JWT, expired, signed with another key or
algorithm, or issued by/for someone else; a valid token without the route's scope gets 403.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import jwt

from tradai_api.settings import ApiSettings

BACKTESTS_READ = "backtests:read"
BACKTESTS_RUN = "backtests:run"
DATA_READ = "data:read"
DATA_SYNC = "data:sync"
MODELS_READ = "models:read"
MODELS_WRITE = "models:write"
BOTS_READ = "bots:read"
BOTS_WRITE = "bots:write"
ALL_SCOPES = (BACKTESTS_READ, BACKTESTS_RUN, DATA_READ, DATA_SYNC, MODELS_READ, MODELS_WRITE, BOTS_READ, BOTS_WRITE)
# Tolerated clock difference between the token's issuer and this process.
LEEWAY_SECONDS = 30


class AuthError(Exception):
    """The request carries no acceptable token (401); the message says why, without secrets."""


class MissingToken(AuthError):
    """No credentials at all (RFC 6750: the challenge then carries no error code)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise MissingToken("missing bearer token (Authorization: Bearer <JWT>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("malformed Authorization header: expected 'Bearer <JWT>'")
    return token.strip()


def scopes_of(claims: dict, prefix: str) -> frozenset[str]:
    raw = claims.get("scope", "")
    if not isinstance(raw, str):
        raise AuthError("malformed token: the scope claim must be a space-separated string")
    scopes = set()
    for item in raw.split():
        if prefix:
            if not item.startswith(prefix):
                continue  # another resource server's scope grants nothing here
            item = item.removeprefix(prefix)
        scopes.add(item)
    return frozenset(scopes)


class JwksKeys:
    """An identity provider's signing keys by key id, fetched on first use and refetched when a
    token names a key id not seen yet (keys rotate), at most once per ``min_refetch_seconds``."""

    def __init__(self, url: str, min_refetch_seconds: float, timeout: float = 5.0):
        self.url = url
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        try:
            response = httpx.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            # The caller cannot verify any token: that is the server's fault, not the client's.
            raise JwksUnavailable(f"cannot read the JWKS at {self.url}: {exc}") from exc
        finally:
            self._fetched_at = time.monotonic()
        # Only RSA signing keys: an HMAC key in the set must never verify an RS256-labelled token.
        self._keys = {
            k.key_id: k for k in key_set.keys
            if k.key_id and k.key_type == "RSA" and k.public_key_use in (None, "sig")
        }

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            if kid not in self._keys:
                stale = self._fetched_at is None or time.monotonic() - self._fetched_at >= self.min_refetch_seconds
                if stale:
                    self._fetch()
            found = self._keys.get(kid)
        if found is None:
            raise AuthError(f"token signed with unknown key id {kid!r}")
        return found


class JwksUnavailable(RuntimeError):
    """The identity provider's key set cannot be read (503)."""


class Authenticator:
    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.jwks = (
            JwksKeys(settings.jwks_url, settings.jwks_min_refetch_seconds) if settings.auth_mode == "jwks" else None
        )

    def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError(f"malformed token: {exc}") from exc
        claims = self._verified_claims(token, header)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("token has no subject (sub claim)")
        return Principal(subject, scopes_of(claims, self.settings.scope_prefix))

    def _verified_claims(self, token: str, header: dict) -> dict:
        s = self.settings
        options = {"require": ["exp", "sub"]}
        try:
            if s.auth_mode == "hs256":
                return jwt.decode(
                    token, s.jwt_secret, algorithms=[s.jwt_algorithm], issuer=s.jwt_issuer, audience=s.jwt_audience,
                    leeway=LEEWAY_SECONDS, options={**options, "verify_aud": s.jwt_audience is not None},
                )
            if header.get("alg") != "RS256":
                raise AuthError(f"token algorithm {header.get('alg')!r} is not accepted; expected RS256")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise AuthError("token header has no key id (kid)")
            key = self.jwks.key(kid)
            claims = jwt.decode(
                token, key.key, algorithms=["RS256"], issuer=s.jwt_issuer, leeway=LEEWAY_SECONDS,
                options={**options, "require": ["exp", "sub", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature does not verify") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer is not accepted") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience is not accepted") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        self._check_audience(claims)
        return claims

    def _check_audience(self, claims: dict) -> None:
        """ID tokens carry ``aud``; Cognito access tokens carry the app client id in ``client_id``."""
        expected = self.settings.jwt_audience
        if "aud" in claims:
            audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        else:
            audiences = [claims.get("client_id")]
        if expected not in audiences:
            raise AuthError("token audience is not accepted")


def mint_token(
    secret: str,
    subject: str,
    scopes: list[str] | tuple[str, ...],
    ttl_seconds: float,
    *,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A token for the hs256 mode (development and scripts that share the secret)."""
    now = int(time.time())
    claims = {"sub": subject, "scope": " ".join(scopes), "iat": now, "exp": now + int(ttl_seconds)}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=algorithm)
