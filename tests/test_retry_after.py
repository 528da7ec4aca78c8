"""How long an ITSM server asked us to wait: seconds, an HTTP date, a rate-limit reset, or nonsense."""

import httpx
import pytest

from ticketsmith.connectors.http_api import retry_after_seconds

NOW = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "Wed, 18 Nov 2026 11:07:40 GMT"}, 60.0),
        ({"Retry-After": "Wed, 18 Nov 2026 11:00:00 GMT"}, 0.0),  # already past
        ({"X-RateLimit-Reset": str(NOW + 30)}, 30.0),
        ({"Retry-After": "soon"}, None),  # neither seconds nor a date: the job store's backoff decides
        ({"Retry-After": "soon", "X-RateLimit-Reset": str(NOW + 9)}, 9.0),
        ({"X-RateLimit-Reset": "later"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(httpx.Headers(headers), now=lambda: NOW) == expected
