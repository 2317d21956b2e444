"""The simulated exchange's HTTP layer: a Starlette application over :class:`~simulator.binance.FakeExchange`.

``create_app(exchange)`` gives one route per Binance endpoint the exchange answers, the control
endpoints (``/__control``, ``/__reset``, ``/__stats``) and, last, a catch-all that answers an unknown
path or method as Binance does (HTTP 404, ``-5000``). Tests can drive it in-process with Starlette's
``TestClient``; ``serve`` runs it under uvicorn on a real socket, where the fault rules can also
break connections (a TCP reset, or an answer cut in half), which an in-process client cannot see.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from simulator.binance import FakeExchange, Reply

log = logging.getLogger("tradai.local_exchange")

CONTROL_ROUTES = (("GET", "/__stats"), ("POST", "/__reset"), ("POST", "/__control"))
ALL_METHODS = ["GET", "POST", "PUT", "DELETE"]
TRANSPORT = "transport"
"""The key of the connection's asyncio transport in a request's ``state`` (set by ``_Protocol``)."""


class ExchangeResponse(Response):
    """A reply of the exchange, sent as it is, or broken the way its fault rule says."""

    def __init__(self, reply: Reply):
        super().__init__(reply.body, reply.status, headers={"Content-Type": reply.content_type, **reply.headers})
        self.disconnect = reply.disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.disconnect is None:
            return await super().__call__(scope, receive, send)
        transport: asyncio.Transport | None = scope.get("state", {}).get(TRANSPORT)
        if transport is None:
            raise ConnectionError(f"fault rule {self.disconnect!r}: only a served exchange can break a connection")
        if self.disconnect == "reset":
            # SO_LINGER 0: closing sends a TCP reset instead of an orderly end, as a dropped proxy does.
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            # "truncate": the headers promise the whole body, half of it arrives, then the connection closes.
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            transport.write(self.body[: len(self.body) // 2])
            transport.close()
        # Let the server see the connection go before this answer ends, so it does not take the break for
        # an application that answered nothing (and try to send a 500 on the closed connection).
        for _ in range(3):
            await asyncio.sleep(0)


def _params(request: Request, body: bytes) -> dict[str, str]:
    params = {k: v[-1] for k, v in parse_qs(request.url.query, keep_blank_values=True).items()}
    if body and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params |= {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    return params


def _api_endpoint(exchange: FakeExchange) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        try:
            # In a worker thread: an injected delay must not hold up the other requests.
            reply = await run_in_threadpool(
                exchange.handle, request.method, request.url.path, _params(request, body), request.headers
            )
        except Exception:  # a bug here must not look like a dropped connection to the client
            log.exception("error answering %s %s", request.method, request.url)
            reply = Reply.error(500, -1000, "Internal error in the fake Binance server.")
        return ExchangeResponse(reply)

    return endpoint


def _control_endpoint(exchange: FakeExchange) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return ExchangeResponse(exchange.handle_control(request.method, request.url.path, await request.body()))

    return endpoint


def create_app(exchange: FakeExchange) -> Starlette:
    api, control = _api_endpoint(exchange), _control_endpoint(exchange)
    methods_by_path: dict[str, list[str]] = {}
    for method, path in exchange.routes():
        methods_by_path.setdefault(path, []).append(method)
    routes = [Route(path, api, methods=methods) for path, methods in methods_by_path.items()]
    routes += [Route(path, control, methods=[method]) for method, path in CONTROL_ROUTES]
    # Anything else: the exchange answers it (fault rules apply, the request is counted) with its 404.
    routes.append(Route("/{path:path}", api, methods=ALL_METHODS))
    return Starlette(routes=routes)


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, handing each request its connection's transport (for the faults
    that break connections)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = {**self.app_state, TRANSPORT: transport}


def server(exchange: FakeExchange, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``exchange`` (keep-alive on, as ccxt's sessions expect; no access log)."""
    config = uvicorn.Config(
        create_app(exchange), host=host, port=port, http=_Protocol, lifespan="off", access_log=False,
        log_level="warning", server_header=False, date_header=False, timeout_keep_alive=30, backlog=128,
    )
    return uvicorn.Server(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Serve the simulated Binance exchange."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, help="freqtrade data directory (feather files)")
    parser.add_argument(
        "--config", type=Path, help="JSON config: seed, spot, futures, now_ms, clock_speed, request_weights"
    )
    parser.add_argument("--seed", type=int, help="overrides the config's seed")
    parser.add_argument(
        "--request-weights", action="store_true",
        help="refuse requests past Binance's per-minute request weight (HTTP 429 -1003), as the config's request_weights",
    )
    parser.add_argument(
        "--parent-pid", type=int, help="stop once process PID is no longer the parent (died)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s local-exchange %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    config = json.loads(args.config.read_text()) if args.config else {}
    if args.seed is not None:
        config["seed"] = args.seed
    if args.request_weights:
        config["request_weights"] = True
    exchange = FakeExchange.from_config(config, data_dir=args.data_dir)
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((args.host, args.port))
    except OSError as exc:  # say plainly why, before any server machinery (its message is lower case)
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc)
        return 1
    serving = server(exchange, args.host, args.port)
    serving.install_signal_handlers = lambda: None  # SIGTERM and SIGINT stop the loop below instead
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve = threading.Thread(target=serving.run, kwargs={"sockets": [listening]}, daemon=True)
    serve.start()
    while not serving.started:
        if not serve.is_alive():
            return 1  # uvicorn has logged why
        time.sleep(0.02)
    port = listening.getsockname()[1]
    print(f"LISTENING http://{args.host}:{port}", flush=True)
    while not stop.wait(0.5):
        if args.parent_pid is not None and os.getppid() != args.parent_pid:
            log.warning("parent process %d is gone; stopping", args.parent_pid)
            break
    exchange.stopping.set()
    serving.should_exit = True
    serve.join(timeout=10)
    return 0
