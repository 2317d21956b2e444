"""Bearer JWTs: HS256 with a shared secret locally, RS256 against an identity provider's JWKS in AWS.

Every route but health needs a token; the ``scope`` claim (space-separated, OAuth 2 style) says what
it may do. A token is refused (401) when it is missing, not a JWT, expired, signed with another key or
algorithm, or issued by/for someone else; a valid token without the route's scope gets 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from resources.aws_contract import API_SCOPES
from tradai_api.settings import DEFAULT_AUDIENCE, ApiSettings

# One list of scopes for the API, the CLI and the identity provider's resource server (infra/).
ALL_SCOPES = API_SCOPES
BACKTESTS_READ, BACKTESTS_RUN, DATA_READ, DATA_SYNC, MODELS_READ, MODELS_WRITE, BOTS_READ, BOTS_WRITE, ADMIN = ALL_SCOPES
"""``admin``: operating the API itself: the health report's details (store locations, error messages)."""
# Tolerated clock difference between the token's issuer and this process.
LEEWAY_SECONDS = 30
JWKS_LIFESPAN_SECONDS = 300.0
JWKS_TIMEOUT_SECONDS = 5.0


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


class JwksUnavailable(RuntimeError):
    """The identity provider's key set cannot be read (503)."""


def jwks_client(settings: ApiSettings) -> jwt.PyJWKClient:
    """The key set is cached for ``JWKS_LIFESPAN_SECONDS``; a token naming a key id not in it refetches
    the set (keys rotate), at most once per ``jwks_min_refetch_seconds``, so a flood of made-up key
    ids does not become a flood of requests to the identity provider."""
    return jwt.PyJWKClient(
        settings.jwks_url, cache_jwk_set=True, lifespan=JWKS_LIFESPAN_SECONDS, timeout=JWKS_TIMEOUT_SECONDS,
        cooldown_duration=settings.jwks_min_refetch_seconds,
    )


def audiences_of(claims: dict) -> list[str]:
    """ID tokens carry ``aud`` (a string or a list); Cognito access tokens carry the app client id in
    ``client_id`` and no ``aud``."""
    if "aud" in claims:
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    elif "client_id" in claims:
        audiences = [claims["client_id"]]
    else:
        raise AuthError("token has no audience (aud or client_id claim)")
    if not all(isinstance(a, str) for a in audiences):
        raise AuthError("malformed token: the audience must be a string or a list of strings")
    return audiences


class Authenticator:
    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.jwks = jwks_client(settings) if settings.auth_mode == "jwks" else None

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
        # The audience is checked below, the same way in both modes (PyJWT knows only ``aud``).
        options = {"require": ["exp", "sub"], "verify_aud": False}
        try:
            if s.auth_mode == "hs256":
                claims = jwt.decode(
                    token, s.jwt_secret, algorithms=[s.jwt_algorithm], issuer=s.jwt_issuer, leeway=LEEWAY_SECONDS,
                    options=options,
                )
            else:
                if header.get("alg") != "RS256":
                    raise AuthError(f"token algorithm {header.get('alg')!r} is not accepted; expected RS256")
                kid = header.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise AuthError("token header has no key id (kid)")
                claims = jwt.decode(
                    token, self._signing_key(kid).key, algorithms=["RS256"], issuer=s.jwt_issuer, leeway=LEEWAY_SECONDS,
                    options={**options, "require": ["exp", "sub", "iss"]},
                )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature does not verify") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer is not accepted") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        if s.audience not in audiences_of(claims):
            raise AuthError("token audience is not accepted")
        return claims

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        try:
            # Reads the cached set, or fetches it: a failure here is the identity provider's.
            self.jwks.get_signing_keys()
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as exc:
            raise JwksUnavailable(f"cannot read the JWKS at {self.settings.jwks_url}: {exc}") from exc
        try:
            key = self.jwks.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
            raise JwksUnavailable(f"cannot read the JWKS at {self.settings.jwks_url}: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"token signed with unknown key id {kid!r}") from exc
        # Only RSA keys: an HMAC key in the set must never verify an RS256-labelled token.
        if key.key_type != "RSA":
            raise AuthError(f"token signed with key id {kid!r}, which is not an RSA key")
        return key


def mint_token(
    secret: str,
    subject: str,
    scopes: list[str] | tuple[str, ...],
    ttl_seconds: float,
    *,
    algorithm: str = "HS256",
    issuer: str | None = None,
    audience: str = DEFAULT_AUDIENCE,
) -> str:
    """A token for the hs256 mode (development and scripts that share the secret)."""
    now = int(time.time())
    claims = {"sub": subject, "scope": " ".join(scopes), "aud": audience, "iat": now, "exp": now + int(ttl_seconds)}
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)
