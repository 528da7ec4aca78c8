"""Jira Cloud (REST API v3) connector, with Jira Service Management internal notes where present.

- Auth: basic with `email:api_token`. Polling: `POST /rest/api/3/search/jql` with a bounded JQL
  (`project = P AND key > "P-123" ORDER BY key ASC`) paged by `nextPageToken`; the cursor is the last
  key seen, so no ticket is skipped whatever the time zones.
- Reading: `GET /rest/api/3/issue/{key}`; the text is the summary plus the description, read from
  Atlassian Document Format.
- Writing: `PUT /rest/api/3/issue/{key}?notifyUsers=false` with the mapped fields that are still
  empty and the review label; then the note, once: a comment (ADF) on `/rest/api/3/issue/{key}/comment`
  or, with `internal_note: jsm`, an internal `{"public": false}` comment on
  `/rest/servicedeskapi/request/{key}/comment`. The note carries the job's marker, and an existing
  note with that marker is never added again.
- Webhooks: admin webhooks with a secret sign the body (`X-Hub-Signature`); `jira:issue_created`
  events of the configured project enqueue the issue key."""

import base64
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ticketsmith.connectors.adf import adf_to_text, text_to_adf
from ticketsmith.connectors.http_api import ApiClient
from ticketsmith.connectors.itsm import (
    ItsmSettings,
    NoteWritingConnector,
    RemoteTicket,
    Secret,
)
from ticketsmith.connectors.registry import ConnectorKind
from ticketsmith.connectors.webhooks import WebhookCall, WebhookNews, check_hmac_signature
from ticketsmith.runtime.schema import TriageResult


class JiraSettings(ItsmSettings):
    kind: Literal["jira"] = "jira"
    base_url: str = Field(description="https://<site>.atlassian.net")
    email: str
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    review_label: str | None = Field("ticketsmith-review", description="label added to needs-review tickets")
    label_prefix: str | None = Field(None, description="also add `<prefix><category>` as a label")
    internal_note: Literal["comment", "jsm"] = "comment"


class JiraConnector(NoteWritingConnector):
    system = "jira"
    settings: JiraSettings

    def __init__(self, settings: JiraSettings, client: ApiClient | None = None) -> None:
        self.settings = settings
        self.source = f"jira:{settings.project}"
        self.client = client or ApiClient("jira", settings.base_url, self._auth, settings.timeout_s)

    def _auth(self) -> dict[str, str]:
        pair = f"{self.settings.email}:{self.settings.api_token.get()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode(), "Accept": "application/json"}

    def close(self) -> None:
        self.client.close()

    def _jql(self, cursor: str | None) -> str:
        project = self.settings.project
        if cursor:
            return f'project = "{project}" AND key > "{cursor}" ORDER BY key ASC'
        return f'project = "{project}" AND created >= -{self.settings.first_poll_days}d ORDER BY key ASC'

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        keys: list[str] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"jql": self._jql(cursor), "maxResults": self.settings.page_size, "fields": ["id"]}
            if token:
                body["nextPageToken"] = token
            page = self.client.json("POST", "/rest/api/3/search/jql", json=body)
            keys += [str(issue["key"]) for issue in page.get("issues", [])]
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                break
        return keys, (keys[-1] if keys else cursor)

    def fetch(self, key: str) -> RemoteTicket:
        wanted = ["summary", "description", "labels", *(t.field for t in self.settings.fields.values())]
        issue = self.client.json("GET", f"/rest/api/3/issue/{key}", params={"fields": ",".join(wanted)})
        fields = issue.get("fields") or {}
        text = "\n".join(part for part in (fields.get("summary") or "", adf_to_text(fields.get("description"))) if part)
        return RemoteTicket(key=key, text=text, current={k: fields.get(k) for k in wanted})

    def _update(
        self, ticket: RemoteTicket, result: TriageResult, updates: dict[str, Any], paths: list[str]
    ) -> list[str]:
        """The fields, and the labels (review, category) in the same edit."""
        labels = []
        if result.needs_review and self.settings.review_label:
            labels.append(self.settings.review_label)
        if self.settings.label_prefix:
            labels.append(f"{self.settings.label_prefix}{result.category}".replace(" ", "-"))
        labels = [label for label in labels if label not in (ticket.current.get("labels") or [])]
        if not updates and not labels:
            return []
        body: dict[str, Any] = {"fields": updates}
        if labels:
            body["update"] = {"labels": [{"add": label} for label in labels]}
        self.client.request("PUT", f"/rest/api/3/issue/{ticket.key}", params={"notifyUsers": "false"}, json=body)
        return [*paths, *(f"label:{label}" for label in labels)]

    def _add_note(self, key: str, note: str) -> None:
        if self.settings.internal_note == "jsm":
            body = {"body": note, "public": False}
            self.client.request("POST", f"/rest/servicedeskapi/request/{key}/comment", json=body)
        else:
            self.client.request("POST", f"/rest/api/3/issue/{key}/comment", json={"body": text_to_adf(note)})

    def _notes(self, key: str) -> Iterator[str]:
        jsm = self.settings.internal_note == "jsm"
        path = f"/rest/servicedeskapi/request/{key}/comment" if jsm else f"/rest/api/3/issue/{key}/comment"
        list_key = "values" if jsm else "comments"
        start = 0
        while True:
            params = {"start": start, "limit": 100} if jsm else {"startAt": start, "maxResults": 100}
            page = self.client.json("GET", path, params=params)
            comments = page.get(list_key) or []
            yield from (adf_to_text(c.get("body")) for c in comments)
            start += len(comments)
            if not comments or page.get("isLastPage", start >= int(page.get("total", start))):
                return


def read_webhook(settings: JiraSettings, call: WebhookCall) -> WebhookNews:
    """The issue a verified `jira:issue_created` event of this project announces."""
    check_hmac_signature(call)
    event = call.json()
    if not isinstance(event, dict) or event.get("webhookEvent") != "jira:issue_created":
        return WebhookNews()
    key = str((event.get("issue") or {}).get("key") or "")
    return WebhookNews(keys=[key] if key.startswith(f"{settings.project}-") else [])


CONNECTOR = ConnectorKind(
    config_key="jira", title="Jira Cloud", settings=JiraSettings, connector=JiraConnector, webhook=read_webhook
)
