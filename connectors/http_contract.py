"""The HTTP side's bodies as pydantic models, and the responses each route documents.

What /openapi.json says is what the routes send: every error body is `ErrorBody`
(`{"detail": "<message>"}`) or, for 422 only, `ValidationErrorBody` (`{"detail": [{loc, msg, type}]}`,
FastAPI's documented shape without the `input` it would otherwise echo back)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

DEFAULT_MAX_BODY_BYTES = 1_000_000

# One character that clean_ticket_text keeps: not whitespace (str.isspace) and not a control character
# it blanks. The server refuses a text without one, so the schema says so (a test checks every code
# point). Explicit ranges, no `\s`: ECMA-262, Python and Rust regexes disagree on what `\s` means.
TEXT_PATTERN = "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


class TriageRequest(BaseModel):
    # Strict: `true` is not an id and `1` is not a text, as the schema says; python-re: the pattern is
    # matched by the engine the test checks it with, code point by code point.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        regex_engine="python-re",
        json_schema_extra={"examples": [{"text": "My laptop screen flickers since the update", "id": "T-1"}]},
    )

    text: str = Field(
        pattern=TEXT_PATTERN,
        description="the ticket's text; it needs a character that is neither whitespace nor a control character",
    )
    id: StrictStr | StrictInt | None = Field(None, description="returned as the result's `id`")


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: `body`, `path`, `query` or `header`, then the field")
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: list[FieldError]


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok; degraded: working, but not as configured for production (see reasons); "
        "unavailable (503): the worker cannot work"
    )
    reasons: list[str] = Field(default_factory=list, description="why the status is not ok")
    model: str
    jobs: dict[str, int] = Field(description="the job store's tickets by state (empty when it cannot be read)")


class WebhookAccepted(BaseModel):
    received: list[str] = Field(description="the ticket keys the call announced")
    enqueued: list[str] = Field(description="those that became new jobs (a replay enqueues nothing)")


Responses = dict[int | str, dict[str, Any]]

UNAUTHORISED: Responses = {
    401: {
        "model": ErrorBody,
        "description": "no `Authorization: Bearer <token>`, or a token that is not configured",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    }
}
INVALID: Responses = {422: {"model": ValidationErrorBody, "description": "the request does not match this document"}}
# Any route can fail unexpectedly (a job store that is locked or gone); it answers so, in JSON.
FAILED: Responses = {500: {"model": ErrorBody, "description": "an unexpected failure, logged by the server"}}
# A shared job store (PostgreSQL) can be down for a while; the worker pauses through it, callers retry.
STORE_RETRY_AFTER_S = 10
UNAVAILABLE: Responses = {
    503: {
        "model": ErrorBody,
        "description": "the job store cannot be reached (a database outage); retry later",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    }
}


def too_large(max_body_bytes: int) -> Responses:
    return {413: {"model": ErrorBody, "description": f"the body is over {max_body_bytes} bytes (refused unread)"}}
