"""The HTTP API's application: ``create_app(settings)``, or ``create_app_from_environment`` for
uvicorn's ``--factory`` (``make dev`` runs it on 127.0.0.1:8000)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tradai_api.dagster_client import DagsterError, DagsterUnavailable
from tradai_api.deps import Services
from tradai_api.routes import backtests, bots, catalog, data, health, models, strategies, sweeps
from tradai_api.settings import ApiSettings
from tradai_api.stores import BotBackends, warm_up


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with 413: at once when Content-Length says so, and
    while reading when the body is streamed (chunked) without a length. Bodies under the limit are
    buffered and handed to the application unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # The server has parsed the header; a value it let through that is not a number is left to
        # the streaming count below.
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, f"request body over {self.max_bytes} bytes")
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, 413, f"request body over {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: ApiSettings, bot_backends: BotBackends | None = None) -> FastAPI:
    """``bot_backends`` replaces the bot backends the settings pick (local processes or ECS)."""
    svc = Services.build(settings, bot_backends)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.warm_up:
            warm_up()
        yield
        svc.dagster.close()

    app = FastAPI(
        title="TradAI API",
        version="1",
        description="Backtests, parameter sweeps, strategies, market data, models and bots of TradAI. Every route but /api/v1/health "
        "needs a bearer JWT whose `scope` claim holds the route's scope (backtests:read, backtests:run, data:read, "
        "data:sync, models:read, models:write, bots:read, bots:write); with the admin scope, /api/v1/health also "
        "says where each component is and what it answered.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.services = svc

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers JSON nested past the parser's recursion limit with a bare "There was an error
        # parsing the body" (400): say why, as for other malformed bodies.
        if isinstance(exc.__cause__, RecursionError):
            error = {"loc": ["body"], "msg": "JSON nests too deeply to parse", "type": "json_too_deep"}
            return JSONResponse({"detail": [error]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(DagsterUnavailable)
    async def dagster_unavailable(request: Request, exc: DagsterUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "10"})

    @app.exception_handler(DagsterError)
    async def dagster_error(request: Request, exc: DagsterError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=502)

    for module in (health, backtests, sweeps, strategies, catalog, data, models, bots):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def create_app_from_environment() -> FastAPI:
    settings = ApiSettings.from_environment()
    print(
        f"TradAI API: auth {settings.auth_mode}, Dagster {settings.dagster_graphql_url}, "
        f"rate limits {settings.rate_limit} per client and {settings.backtest_rate_limit} backtest launches",
        flush=True,
    )
    return create_app(settings)
