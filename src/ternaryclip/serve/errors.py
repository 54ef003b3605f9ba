"""Errors that become JSON answers ``{"error": ...}`` with a status, never a traceback."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("ternaryclip.serve")


class ApiError(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class QueueFull(ApiError):
    """The bounded queue of a tower (or of the image decoder) is full: come back later."""

    def __init__(self, what: str, retry_after_s: int = 1):
        super().__init__(503, f"server busy: the {what} queue is full", {"Retry-After": str(retry_after_s)})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def api_error_handler(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, ApiError)
    return error_response(err.status, err.message, err.headers)


async def http_error_handler(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    return error_response(err.status_code, str(err.detail), dict(err.headers or {}))


async def internal_error_handler(request: Request, err: Exception) -> JSONResponse:
    """The last resort: the server logs the fault and stays up; the caller learns nothing internal."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal server error")


EXCEPTION_HANDLERS = {ApiError: api_error_handler, HTTPException: http_error_handler, Exception: internal_error_handler}
