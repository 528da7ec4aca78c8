"""Zoho Desk (API v1) connector (desk.zoho.com/DeskAPIDocument).

- Auth: `Authorization: Zoho-oauthtoken <token>` from a refresh token (connectors/zoho_oauth.py) and the
  `orgId` header on every call.
- Polling: `GET /tickets?from=<i>&limit=<=100&sortBy=-createdTime` (newest first; the list has no
  "created after" filter), paged until a ticket older than the cursor; the cursor is the newest
  `createdTime` seen. Tickets at the cursor's own instant are listed again and de-duplicated by the job
  store, so none is skipped. An empty list is a 204 with no body.
- Reading: `GET /tickets/{id}`: the subject plus the description (HTML, stripped).
- Writing: `PATCH /tickets/{id}` with the mapped fields that are still empty (`category`,
  `subCategory`, `priority`, `classification`, `cf.cf_<name>` custom fields, ...) and, for a
  needs-review ticket, the review route (e.g. `teamId` of the human-triage team); then a private
  comment `POST /tickets/{id}/comments {content, contentType: plainText, isPublic: false}` once,
  recognised by the job's marker in `GET /tickets/{id}/comments`.
- Limits: 429 when the credits or the concurrency cap run out, without `Retry-After`: the job store's
  backoff applies.
- Webhooks sign nothing: the call carries the shared secret; `Ticket_Add` events
  (`[{eventType, orgId, payload: {id, ...}}]`) of the configured org enqueue the ticket id."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from ticketsmith.connectors.http_api import ApiClient
from ticketsmith.connectors.itsm import (
    ItsmSettings,
    NoteWritingConnector,
    RemoteTicket,
)
from ticketsmith.connectors.registry import ConnectorKind
from ticketsmith.connectors.webhooks import WebhookCall, WebhookNews, WebhookRejected, check_shared_secret
from ticketsmith.connectors.zoho_oauth import ZohoOAuth, ZohoOAuthSettings
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.text_hygiene import strip_html


class ZohoDeskSettings(ItsmSettings):
    kind: Literal["zoho_desk"] = "zoho_desk"
    base_url: str = Field("https://desk.zoho.com/api/v1", description="the data centre's Desk API root")
    org_id: str
    oauth: ZohoOAuthSettings
    department_id: str | None = Field(None, description="only tickets of this department")


def _zoho_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ZohoDeskConnector(NoteWritingConnector):
    system = "zoho_desk"
    settings: ZohoDeskSettings

    def __init__(self, settings: ZohoDeskSettings, client: ApiClient | None = None) -> None:
        self.settings = settings
        self.source = f"zoho_desk:{settings.org_id}" + (f":{settings.department_id}" if settings.department_id else "")
        self.oauth = ZohoOAuth(settings.oauth, settings.timeout_s)
        self.client = client or ApiClient(
            "zoho desk", settings.base_url, self._auth, settings.timeout_s, on_unauthorized=self.oauth.renew
        )

    def _auth(self) -> dict[str, str]:
        return {**self.oauth.headers(), "orgId": self.settings.org_id}

    def close(self) -> None:
        self.client.close()
        self.oauth.close()

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        since = cursor or _zoho_time(datetime.now(UTC) - timedelta(days=self.settings.first_poll_days))
        found: list[tuple[str, str]] = []
        start = 0
        while True:
            params: dict[str, Any] = {"from": start, "limit": self.settings.page_size, "sortBy": "-createdTime"}
            if self.settings.department_id:
                params["departmentId"] = self.settings.department_id
            page = self.client.json("GET", "/tickets", params=params).get("data") or []
            found += [(str(t["createdTime"]), str(t["id"])) for t in page if str(t["createdTime"]) >= since]
            start += len(page)
            if len(page) < self.settings.page_size or any(str(t["createdTime"]) < since for t in page):
                break
        found.sort()
        return [key for _, key in found], (found[-1][0] if found else cursor)

    def fetch(self, key: str) -> RemoteTicket:
        ticket = self.client.json("GET", f"/tickets/{key}")
        text = "\n".join(part for part in (ticket.get("subject"), strip_html(ticket.get("description") or "")) if part)
        return RemoteTicket(key=key, text=text, current=ticket)

    def _update(
        self, ticket: RemoteTicket, result: TriageResult, updates: dict[str, Any], paths: list[str]
    ) -> list[str]:
        if not updates:
            return []
        self.client.request("PATCH", f"/tickets/{ticket.key}", json=updates)
        return paths

    def _add_note(self, key: str, note: str) -> None:
        body = {"content": note, "contentType": "plainText", "isPublic": False}
        self.client.request("POST", f"/tickets/{key}/comments", json=body)

    def _notes(self, key: str) -> Iterator[str]:
        start = 0
        while True:
            comments = self.client.json("GET", f"/tickets/{key}/comments", params={"from": start, "limit": 100})
            page = comments.get("data") or []
            yield from (strip_html(str(c.get("content") or "")) for c in page)
            start += len(page)
            if len(page) < 100:
                return


def read_webhook(settings: ZohoDeskSettings, call: WebhookCall) -> WebhookNews:
    """The new tickets of this org that a verified call announces."""
    check_shared_secret(call)
    events = call.json()
    if not isinstance(events, list):
        raise WebhookRejected(400, "a Zoho Desk webhook body is a JSON array of events")
    return WebhookNews(
        keys=[
            str(event["payload"]["id"])
            for event in events
            if isinstance(event, dict)
            and event.get("eventType") == "Ticket_Add"
            and str(event.get("orgId")) == settings.org_id
            and isinstance(event.get("payload"), dict)
            and event["payload"].get("id")
        ]
    )


CONNECTOR = ConnectorKind(
    config_key="zoho_desk",
    title="Zoho Desk",
    settings=ZohoDeskSettings,
    connector=ZohoDeskConnector,
    webhook=read_webhook,
)
