"""Error answers that never echo the request, in the shapes /openapi.json documents.

FastAPI's default 422 repeats every invalid value (`input`) and its context: a 60 MB text came back
as a 60 MB answer. Here an error keeps where it is, what is wrong and its type. The one location part
that comes from the request, an unknown key's name, is left out: the caller knows what it sent.
An unexpected failure is a JSON `ErrorBody` 500 too, not Starlette's plain-text page, and a job store
that cannot be reached is a 503 with `Retry-After`."""

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ticketsmith.connectors.http_contract import STORE_RETRY_AFTER_S, ErrorBody, FieldError, ValidationErrorBody
from ticketsmith.connectors.job_store import StoreUnavailable


def _field_error(error: Mapping[str, Any]) -> FieldError:
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    kind = str(error.get("type", "value_error"))
    if kind == "extra_forbidden":
        loc = loc[:-1]
    return FieldError(loc=loc, msg=str(error.get("msg", "")), type=kind)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> ValidationErrorBody:
    """pydantic/FastAPI error dicts without `input`, `ctx` and `url`."""
    return ValidationErrorBody(detail=[_field_error(error) for error in errors])


def invalid(errors: Iterable[Mapping[str, Any]]) -> JSONResponse:
    return JSONResponse(field_errors(errors).model_dump(mode="json"), status_code=422)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return invalid(exc.errors())


async def _on_failure(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs its traceback.
    return JSONResponse(ErrorBody(detail="internal error; it has been logged").model_dump(), status_code=500)


async def _on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Not logged here: the worker's own loop says once when an outage starts and once when it ends.
    return JSONResponse(
        ErrorBody(detail="the job store is unavailable; retry later").model_dump(),
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StoreUnavailable, _on_store_unavailable)
    app.add_exception_handler(Exception, _on_failure)
