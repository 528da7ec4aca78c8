"""Refuse a request before anything parses it: a missing or wrong bearer token, or a body over the limit.

FastAPI reads and parses a body before a route's dependencies run, so a token check there comes too
late: an unauthenticated 60 MB POST was read whole. This ASGI middleware answers first: 401 from the
headers alone, 413 from `Content-Length` alone, and for a chunked body it stops reading at the limit.
A refusal closes the connection, so the server never drains the rest. A body within the limit is
handed on as it came: webhook signatures are checked on these raw bytes."""

import hmac
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticketsmith.connectors.http_contract import ErrorBody


class BearerTokens:
    """The configured API tokens; no token configured means nobody is let in."""

    def __init__(self, tokens: Collection[str]) -> None:
        self._tokens = [token.encode() for token in tokens if token]

    def accept(self, authorization: str | None) -> bool:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return False
        # Every token is compared, in constant time, so timing tells nothing about which one is near.
        matches = [hmac.compare_digest(token, given.strip().encode()) for token in self._tokens]
        return any(matches)


class _TooLarge(Exception):
    pass


class _Gone(Exception):
    """The client disconnected before its body was complete: nothing to answer."""


class RequestGuard:
    """`protected`: the (method, path) pairs that need a bearer token; every request has the body limit."""

    def __init__(
        self, app: ASGIApp, *, tokens: BearerTokens, protected: Collection[tuple[str, str]], max_body_bytes: int
    ) -> None:
        self.app, self.tokens, self.protected, self.max_body_bytes = app, tokens, set(protected), max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if (scope["method"], scope["path"]) in self.protected and not self.tokens.accept(headers.get("authorization")):
            message = "a valid `Authorization: Bearer <token>` is required"
            await _refuse(scope, receive, send, 401, message, {"WWW-Authenticate": "Bearer"})
            return
        too_large = f"the request body is over {self.max_body_bytes} bytes"
        if _announces_more(headers.get("content-length"), self.max_body_bytes):
            await _refuse(scope, receive, send, 413, too_large)
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await _refuse(scope, receive, send, 413, too_large)
            return
        except _Gone:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body, counted as it streams in (a chunked body announces no length)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _announces_more(content_length: str | None, limit: int) -> bool:
    """Whether `Content-Length` announces more than `limit`; one that is not a number counts as more
    (isascii: `²` is a latin-1 digit that int() refuses)."""
    if content_length is None:
        return False
    return not (content_length.isascii() and content_length.isdigit()) or int(content_length) > limit


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then whatever the connection says (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    # `Connection: close` makes the server close once answered instead of reading the unread body.
    response = JSONResponse(
        ErrorBody(detail=message).model_dump(), status_code=status, headers={**(headers or {}), "Connection": "close"}
    )
    await response(scope, receive, send)
