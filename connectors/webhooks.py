"""Webhook receivers: verify the call, then name the tickets to enqueue (or ask for a poll).

- Jira (admin webhooks with a secret): `X-Hub-Signature: sha256=<HMAC-SHA256 of the raw body>`;
  `jira:issue_created` events of the configured project enqueue the issue key.
- Zoho Desk signs nothing: the webhook URL carries a shared secret (`?secret=...`) or the call sends it
  in `X-Ticketsmith-Secret`; `Ticket_Add` events (`[{eventType, orgId, payload: {id, ...}}]`) of the
  configured org enqueue the ticket id.
- ServiceDesk Plus webhooks have no fixed payload (admins write the body): with the shared secret,
  the call is a signal to poll now.

Every comparison is constant-time. A forged call (no or wrong signature/secret) is refused and changes
nothing. A replayed call names a ticket that is already a job: the job store's (source, key) key
makes it a no-op, whatever state the job is in."""

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ticketsmith.connectors.itsm import ItsmSettings
from ticketsmith.connectors.jira import JiraSettings
from ticketsmith.connectors.zoho_desk import ZohoDeskSettings


class WebhookRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise WebhookRejected(400, "the body is not JSON") from None


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
        secret = self.settings.webhook_secret.get()
        if isinstance(self.settings, JiraSettings):
            expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            if not _same(expected, headers.get("x-hub-signature")):
                raise WebhookRejected(401, "bad or missing X-Hub-Signature")
            return self._jira_keys(_json(raw), self.settings.project)
        if not _same(secret, headers.get("x-ticketsmith-secret") or query.get("secret")):
            raise WebhookRejected(401, "bad or missing shared secret")
        if isinstance(self.settings, ZohoDeskSettings):
            return self._zoho_keys(_json(raw), self.settings.org_id)
        self.poll_soon()  # ServiceDesk Plus: a signal only
        return []

    @staticmethod
    def _jira_keys(event: Any, project: str) -> list[str]:
        if not isinstance(event, dict) or event.get("webhookEvent") != "jira:issue_created":
            return []
        key = str((event.get("issue") or {}).get("key") or "")
        return [key] if key.startswith(f"{project}-") else []

    @staticmethod
    def _zoho_keys(events: Any, org_id: str) -> list[str]:
        if not isinstance(events, list):
            raise WebhookRejected(400, "a Zoho Desk webhook body is a JSON array of events")
        return [
            str(event["payload"]["id"])
            for event in events
            if isinstance(event, dict)
            and event.get("eventType") == "Ticket_Add"
            and str(event.get("orgId")) == org_id
            and isinstance(event.get("payload"), dict)
            and event["payload"].get("id")
        ]
