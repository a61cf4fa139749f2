"""Error rendering for the FastAPI app: every refusal is 4xx JSON ``{"reason", "detail"}``, never a 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.api.http import ApiError, ApiReason
from twinstream.contracts import InputError

log = logging.getLogger(__name__)


def _body(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"reason": reason, "detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Map refusals to their status and reason; a failing dependency becomes 503 ``unavailable``."""

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

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Input problems never get here; this is a dependency (Milvus, Redis, embedder) failing.
        log.exception("request failed")
        return _body(503, ApiReason.UNAVAILABLE, f"{type(exc).__name__}: service temporarily unavailable")
