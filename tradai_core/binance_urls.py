"""How ccxt reaches a Binance-shaped server at another base URL (the simulated exchange, a test server).

Plain data: the product's bot runtime, the simulator and the tests share it without importing each other.
"""

from __future__ import annotations

from typing import Any

#: ccxt.binance ``urls['api']`` entries and the path each one has on a Binance-shaped server.  Every entry
#: ccxt 4.5 knows is redirected, so nothing can reach the real Binance by accident; unsupported
#: APIs answer 404.  COIN-M's futures/data lives under /dapi there to keep it apart from USDⓈ-M's.
API_PATHS = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/dapi/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}

MARKET_TYPES = {
    "spot": "spot", "futures": "swap", "future": "swap", "swap": "swap", "linear": "swap"
}


def ccxt_config(base_url: str, market_type: str = "spot") -> dict[str, Any]:
    """Constructor config for ``ccxt.binance`` (sync or async) sending every API to ``base_url``.

    ``market_type``: ``"spot"`` or ``"futures"`` (also ``"swap"``, ``"future"``, ``"linear"``),
    which sets ``options.defaultType`` (``"spot"`` / ``"swap"``).  For freqtrade, put it into the
    exchange's ``ccxt_config`` and ``ccxt_async_config`` and also set ``"enable_ws": false`` (no
    websockets here) and ``"only_from_ccxt": true`` (no data.binance.vision downloads).
    """
    if market_type not in MARKET_TYPES:
        raise ValueError(f"market_type must be one of {sorted(MARKET_TYPES)}")
    base_url = base_url.rstrip("/")
    return {
        "urls": {"api": {name: base_url + path for name, path in API_PATHS.items()}},
        "options": {"defaultType": MARKET_TYPES[market_type]},
    }
