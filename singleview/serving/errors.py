"""JSON errors: {"error": ..., "detail": ...}; never a stack trace."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("singleview.serving")


class ErrorBody(BaseModel):
    error: str
    detail: str
    parameter: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.parameter = parameter
        self.headers = headers


# Server error codes that mean "this filter, projection or sort cannot be run":
# BadValue, FailedToParse, NotImplemented (FerretDB), path collisions, and a
# $regex the server's engine refuses (Python's `re` accepted it).
QUERY_REJECTED = frozenset({2, 9, 238, 31249, 31250, 51091})


def bad_parameter(parameter: str, detail: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{parameter}: {detail}", parameter)


def _body(error: str, detail: str, parameter: str | None = None) -> dict:
    body = {"error": error, "detail": detail}
    if parameter is not None:
        body["parameter"] = parameter
    return body


ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "Bad parameter or filter"},
    401: {"model": ErrorBody, "description": "Missing API key"},
    403: {"model": ErrorBody, "description": "Wrong API key"},
    503: {"model": ErrorBody, "description": "MongoDB unavailable, or the segment read model still loading"},
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(_body(exc.error, exc.detail, exc.parameter), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "header", "body")]
        parameter = ".".join(loc) or "request"
        detail = f"{parameter}: {first.get('msg', 'invalid value')}"
        return JSONResponse(_body("invalid_parameter", detail, parameter), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(_body(error, str(exc.detail)), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(ConnectionFailure)
    async def _mongo_down(request: Request, exc: ConnectionFailure):
        log.warning("MongoDB unavailable: %s", type(exc).__name__)
        return JSONResponse(_body("unavailable", "MongoDB is not reachable; retry later"), 503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(PyMongoError)
    async def _mongo_error(request: Request, exc: PyMongoError):
        if isinstance(exc, OperationFailure) and exc.code in QUERY_REJECTED:
            message = (exc.details or {}).get("errmsg") or f"error code {exc.code}"
            return JSONResponse(_body("invalid_query", f"the database rejected the query: {message}"), 400)
        log.error("MongoDB error: %s", exc)
        return JSONResponse(_body("database_error", "the database rejected the query"), 500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(_body("internal_error", "unexpected server error"), 500)
