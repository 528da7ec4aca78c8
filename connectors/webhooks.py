"""Webhook receivers: verify the call, then name the tickets to enqueue (or ask for a poll).

Each connector module reads its own system's calls (`ConnectorKind.webhook`, connectors/registry.py),
with the checks below: Jira signs the raw body (`X-Hub-Signature: sha256=<HMAC-SHA256>`); Zoho Desk
and ServiceDesk Plus sign nothing, so their webhook URL carries a shared secret (`?secret=...`) or
the call sends it in `X-Ticketsmith-Secret`.

Every comparison is constant-time. A forged call (no or wrong signature/secret) is refused and changes
nothing. A replayed call names a ticket that is already a job: the job store's (source, key) key
makes it a no-op, whatever state the job is in."""

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ticketsmith.connectors.itsm import ItsmSettings
from ticketsmith.connectors.registry import connector_kind


class WebhookRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class WebhookCall:
    """One call as a connector's webhook reader sees it, with its source's secret."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    raw: bytes
    secret: str

    def json(self) -> Any:
        try:
            return json.loads(self.raw)
        except ValueError:
            raise WebhookRejected(400, "the body is not JSON") from None


@dataclass(frozen=True)
class WebhookNews:
    """What a verified call announces: ticket keys, or only that something changed (poll now)."""

    keys: list[str] = field(default_factory=list)
    poll: bool = False


def check_hmac_signature(call: WebhookCall) -> None:
    """Jira's admin webhooks with a secret: `X-Hub-Signature: sha256=<HMAC-SHA256 of the raw body>`."""
    expected = "sha256=" + hmac.new(call.secret.encode(), call.raw, hashlib.sha256).hexdigest()
    if not _same(expected, call.headers.get("x-hub-signature")):
        raise WebhookRejected(401, "bad or missing X-Hub-Signature")


def check_shared_secret(call: WebhookCall) -> None:
    """For systems that sign nothing: the secret in `X-Ticketsmith-Secret` or the URL's `?secret=`."""
    if not _same(call.secret, call.headers.get("x-ticketsmith-secret") or call.query.get("secret")):
        raise WebhookRejected(401, "bad or missing shared secret")


@dataclass
class WebhookEndpoint:
    """One configured ITSM source's receiver, at `/webhooks/<kind>/<index>`."""

    settings: ItsmSettings
    source: str
    poll_soon: Callable[[], None]

    def keys(self, headers: Mapping[str, str], query: Mapping[str, str], raw: bytes) -> list[str]:
        """The ticket keys this call announces; raises WebhookRejected for a forged or broken call."""
        if self.settings.webhook_secret is None:
            raise WebhookRejected(404, "webhooks are not enabled for this source (no webhook_secret)")
        call = WebhookCall(headers, query, raw, self.settings.webhook_secret.get())
        news = connector_kind(self.settings.kind).webhook(self.settings, call)
        if news.poll:
            self.poll_soon()
        return news.keys
