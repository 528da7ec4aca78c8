"""HTTP calls to an ITSM API with outcomes the worker can act on.

Every failure becomes a ConnectorError that says whether retrying can help and how long the server
asked us to wait: 429 and 503 with `Retry-After`, other 5xx, timeouts, refused connections and
malformed bodies are transient (the job is retried with backoff); 404 and other 4xx answers are
permanent for that ticket; 401/403 are transient (credentials get fixed or refreshed, the ticket
must not be lost meanwhile) but logged loudly. Secrets never appear in an error message."""

import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class ConnectorError(Exception):
    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status = status


def retry_after_seconds(headers: httpx.Headers, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds (a number or an HTTP date), else `X-RateLimit-Reset` (epoch seconds)."""
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now())
        except (ValueError, TypeError):  # neither seconds nor an HTTP date: the job store's backoff decides
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now())
        except ValueError:
            return None
    return None


class ApiClient:
    """One system's API: base URL, auth headers from a callable (tokens may be refreshed), timeouts."""

    def __init__(
        self,
        system: str,
        base_url: str,
        auth_headers: Callable[[], dict[str, str]],
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_unauthorized: Callable[[], bool] | None = None,
    ) -> None:
        self.system = system
        self._auth_headers = auth_headers
        self._on_unauthorized = on_unauthorized
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; a 401 may refresh credentials once (`on_unauthorized`) and retry."""
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self._on_unauthorized is not None and self._on_unauthorized():
            response = self._send(method, path, **kwargs)
        self._raise_for(response, method, path)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; an empty answer (Zoho's 204 for an empty list) reads as `{}`."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ConnectorError(
                f"{self.system}: malformed JSON from {method} {path}", transient=True, status=response.status_code
            ) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **self._auth_headers()}
        try:
            return self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ConnectorError(f"{self.system}: {method} {path} timed out", transient=True) from None
        except httpx.TransportError as exc:
            raise ConnectorError(
                f"{self.system}: {method} {path} failed: {type(exc).__name__}", transient=True
            ) from None

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        if status < 400:
            return
        where = f"{self.system}: {method} {path} answered {status}"
        if status in (401, 403):
            logger.error("%s: check the credentials; the ticket is kept and retried", where)
            raise ConnectorError(f"{where} (credentials rejected)", transient=True, status=status)
        if status in (409, 429) or status >= 500:
            raise ConnectorError(
                where, transient=True, retry_after=retry_after_seconds(response.headers), status=status
            )
        raise ConnectorError(f"{where}: {response.text[:300]}", transient=False, status=status)
