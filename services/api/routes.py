"""Error rendering for the FastAPI app: refusals are 4xx JSON ``{"reason", "detail"}``, failures 503 or 500.

A dependency that is down or overloaded (`services.errors.is_dependency_failure`) is 503 ``unavailable``
with ``Retry-After``: the same request will work later. Anything else is a bug: 500 ``internal`` with an
error id that is also in the log line carrying the traceback, so a report can be matched to its cause.
Neither body names the exception: its class and message are for the log, not for callers.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.http import ApiError, ApiReason
from services.errors import is_dependency_failure
from twinstream.contracts import InputError

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait before retrying a request that met a dependency outage.
RETRY_AFTER_S = 2


def _body(status: int, reason: str, detail: str, **extra: str) -> JSONResponse:
    return JSONResponse({"reason": reason, "detail": detail, **extra}, status_code=status)


def failure_response(request: Request, exc: Exception) -> JSONResponse:
    """The response to an unexpected exception: 503 for a dependency outage, else 500 with an error id."""
    route = f"{request.method} {request.url.path}"
    if is_dependency_failure(exc):
        log.warning("%s: dependency unavailable: %s: %s", route, type(exc).__name__, exc)
        response = _body(503, ApiReason.UNAVAILABLE, "a dependency is unavailable; retry later")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    error_id = uuid.uuid4().hex[:16]
    log.error("%s: internal error %s", route, error_id, exc_info=exc)
    return _body(500, ApiReason.INTERNAL, f"internal error {error_id}", error_id=error_id)


class FailureMiddleware:
    """Answers an exception no handler took with `failure_response`, instead of re-raising it.

    Why not ``exception_handler(Exception)``: Starlette runs that handler in its outermost middleware and
    raises the exception again after answering, so every outage would be logged a second time with a
    traceback by the server. Here the exception ends with our one log line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # the caller left mid-body: nobody to answer, and neither bug nor outage
            log.info("%s %s: client disconnected before the body was read", scope["method"], scope["path"])
        except Exception as exc:
            if started:  # too late for another status: let the server abort the response
                raise
            await failure_response(Request(scope), exc)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map refusals to their status and reason, and unexpected exceptions to 503 or 500."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.reason, exc.detail)

    @app.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError) -> JSONResponse:
        err = ApiError.from_input(exc)
        return _body(err.status, err.reason, err.detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _body(422, ApiReason.BAD_REQUEST, detail)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        reason = ApiReason.NOT_FOUND if exc.status_code == 404 else ApiReason.BAD_REQUEST
        return _body(exc.status_code, reason, str(exc.detail))

    app.add_middleware(FailureMiddleware)
