"""ManageEngine ServiceDesk Plus (API v3) connector, Cloud or on-premises
(manageengine.com/products/service-desk/sdpod-v3-api/ and .../sdpop-v3-api/).

- Auth: on-premises `authtoken: <technician key>`; Cloud `Authorization: Zoho-oauthtoken <token>`
  through Zoho accounts (connectors/zoho_oauth.py). Always `Accept: application/vnd.manageengine.sdp.v3+json`.
- Polling: `GET /requests?input_data={"list_info": {...}}` (list parameters travel URL-encoded in the
  query), sorted by `created_time` ascending with `search_criteria` `created_time greater than` the
  cursor minus one millisecond, paged by `start_index` while `has_more_rows`; the cursor is the newest
  `created_time.value` (epoch milliseconds). Requests at the cursor's instant come again and are
  de-duplicated by the job store.
- Reading: `GET /requests/{id}`: the subject plus the description (HTML, stripped).
- Writing: `PUT /requests/{id}` with a form field `input_data={"request": {...}}`: the mapped fields
  that are still empty (lookups such as `category`, `subcategory`, `item`, `priority`, `urgency`,
  `impact`, `group` as `{"name": ...}`; `udf_fields.udf_*`), and for a needs-review request the review
  route (e.g. `group: {name: Human Triage}`); then a private note `POST /requests/{id}/notes` once
  (wrapper `request_note` on Cloud, `note` on-premises), recognised by the job's marker.
- Errors: `response_status.status_code` 2000 is success; 4000 and up is an error even inside an
  HTTP 200 (4007 not found and bad input are permanent; 4002/4022 credentials, 4004 internal and
  4015 rate limit are retried).
- Webhooks have no fixed payload (admins write the body): with the shared secret, a call is a signal
  to poll now."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, model_validator

from ticketsmith.connectors.http_api import ApiClient, ConnectorError
from ticketsmith.connectors.itsm import (
    ItsmSettings,
    NoteWritingConnector,
    RemoteTicket,
    Secret,
)
from ticketsmith.connectors.registry import ConnectorKind
from ticketsmith.connectors.webhooks import WebhookCall, WebhookNews, check_shared_secret
from ticketsmith.connectors.zoho_oauth import ZohoOAuth, ZohoOAuthSettings
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.text_hygiene import strip_html

RETRIED_STATUS_CODES = {4002, 4004, 4015, 4022}  # forbidden, internal error, rate limit, invalid API key
ACCEPT = "application/vnd.manageengine.sdp.v3+json"


class ServiceDeskPlusSettings(ItsmSettings):
    kind: Literal["servicedesk_plus"] = "servicedesk_plus"
    base_url: str = Field(description="https://<host>:<port>/api/v3 or https://<domain>/app/<portal>/api/v3")
    edition: Literal["onprem", "cloud"] = "onprem"
    auth_token: Secret | None = Field(None, description="on-premises technician API key")
    oauth: ZohoOAuthSettings | None = Field(None, description="Cloud: Zoho accounts OAuth")

    @model_validator(mode="after")
    def _one_auth(self) -> "ServiceDeskPlusSettings":
        if (self.auth_token is None) == (self.oauth is None):
            raise ValueError("give exactly one of `auth_token` (on-premises) or `oauth` (Cloud)")
        return self


def check_status(body: Any, what: str) -> Any:
    """Raise for an SDP error carried in `response_status` (a dict, or a list on list answers)."""
    statuses = body.get("response_status") if isinstance(body, dict) else None
    for status in statuses if isinstance(statuses, list) else [statuses or {}]:
        code = int(status.get("status_code", 2000))
        if code >= 4000:
            messages = status.get("messages") or [{}]
            codes = {int(m.get("status_code", code)) for m in messages}  # the detailed codes: 4007, 4015, ...
            detail = "; ".join(f"{m.get('status_code', code)} {m.get('message', '')}".strip() for m in messages)
            raise ConnectorError(f"servicedesk plus: {what}: {detail}", transient=bool(codes & RETRIED_STATUS_CODES))
    return body


class ServiceDeskPlusConnector(NoteWritingConnector):
    system = "servicedesk_plus"
    settings: ServiceDeskPlusSettings

    def __init__(self, settings: ServiceDeskPlusSettings, client: ApiClient | None = None) -> None:
        self.settings = settings
        self.source = f"servicedesk_plus:{settings.base_url}"
        self.oauth = ZohoOAuth(settings.oauth, settings.timeout_s) if settings.oauth else None
        renew = self.oauth.renew if self.oauth else None
        self.client = client or ApiClient(
            "servicedesk plus", settings.base_url, self._auth, settings.timeout_s, on_unauthorized=renew
        )
        self.note_key = "request_note" if settings.edition == "cloud" else "note"

    def _auth(self) -> dict[str, str]:
        if self.oauth is not None:
            return {**self.oauth.headers(), "Accept": ACCEPT}
        assert self.settings.auth_token is not None
        return {"authtoken": self.settings.auth_token.get(), "Accept": ACCEPT}

    def close(self) -> None:
        self.client.close()
        if self.oauth is not None:
            self.oauth.close()

    def _call(self, method: str, path: str, what: str, input_data: dict[str, Any] | None = None) -> Any:
        if input_data is None:
            body = self.client.json(method, path)
        elif method == "GET":
            body = self.client.json(method, path, params={"input_data": json.dumps(input_data)})
        else:
            body = self.client.json(method, path, data={"input_data": json.dumps(input_data)})
        return check_status(body, what)

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        if cursor is None:
            since = datetime.now(UTC) - timedelta(days=self.settings.first_poll_days)
            cursor_ms = int(since.timestamp() * 1000)
        else:
            cursor_ms = int(cursor)
        found: list[tuple[int, str]] = []
        start = 1
        while True:
            list_info = {
                "row_count": self.settings.page_size,
                "start_index": start,
                "sort_field": "created_time",
                "sort_order": "asc",
                "search_criteria": {"field": "created_time", "condition": "greater than", "value": str(cursor_ms - 1)},
            }
            page = self._call("GET", "/requests", "listing requests", {"list_info": list_info})
            requests = page.get("requests") or []
            found += [(int(r["created_time"]["value"]), str(r["id"])) for r in requests]
            start += len(requests)
            if not requests or not (page.get("list_info") or {}).get("has_more_rows"):
                break
        found.sort()
        return [key for _, key in found], (str(found[-1][0]) if found else cursor)

    def fetch(self, key: str) -> RemoteTicket:
        request = self._call("GET", f"/requests/{key}", f"reading request {key}").get("request") or {}
        parts = (request.get("subject"), strip_html(request.get("description") or ""))
        return RemoteTicket(key=key, text="\n".join(part for part in parts if part), current=request)

    def _update(
        self, ticket: RemoteTicket, result: TriageResult, updates: dict[str, Any], paths: list[str]
    ) -> list[str]:
        if not updates:
            return []
        self._call("PUT", f"/requests/{ticket.key}", f"updating request {ticket.key}", {"request": updates})
        return paths

    def _add_note(self, key: str, note: str) -> None:
        body = {self.note_key: {"description": note, "show_to_requester": False}}
        self._call("POST", f"/requests/{key}/notes", f"adding a note to request {key}", body)

    def _notes(self, key: str) -> Iterator[str]:
        start = 1
        while True:
            list_info = {"row_count": 100, "start_index": start}
            page = self._call("GET", f"/requests/{key}/notes", f"reading notes of {key}", {"list_info": list_info})
            notes = page.get(f"{self.note_key}s") or []
            yield from (strip_html(str(n.get("description") or "")) for n in notes)
            start += len(notes)
            if not notes or not (page.get("list_info") or {}).get("has_more_rows"):
                return


def read_webhook(settings: ServiceDeskPlusSettings, call: WebhookCall) -> WebhookNews:
    """A verified call names no request reliably: poll now."""
    check_shared_secret(call)
    return WebhookNews(poll=True)


CONNECTOR = ConnectorKind(
    config_key="servicedesk_plus",
    title="ServiceDesk Plus",
    settings=ServiceDeskPlusSettings,
    connector=ServiceDeskPlusConnector,
    webhook=read_webhook,
)
