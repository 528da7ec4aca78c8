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
  note with that marker is never added again."""

import base64
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.connectors.adf import adf_to_text, text_to_adf
from ticketsmith.connectors.http_api import ApiClient
from ticketsmith.connectors.itsm import (
    FieldTarget,
    OurField,
    RemoteTicket,
    Secret,
    add_note_once,
    fields_to_write,
)
from ticketsmith.runtime.schema import TriageResult


class JiraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["jira"] = "jira"
    base_url: str = Field(description="https://<site>.atlassian.net")
    email: str
    api_token: Secret
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    fields: dict[OurField, FieldTarget] = Field(default_factory=dict)
    review_label: str | None = Field("ticketsmith-review", description="label added to needs-review tickets")
    label_prefix: str | None = Field(None, description="also add `<prefix><category>` as a label")
    internal_note: Literal["comment", "jsm"] = "comment"
    first_poll_days: int = Field(1, ge=0, description="with no cursor yet, start with tickets this recent")
    page_size: int = Field(50, ge=1, le=100)
    timeout_s: float = Field(30.0, gt=0)


class JiraConnector:
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

    def write_back(self, ticket: RemoteTicket, result: TriageResult, marker: str) -> list[str]:
        written: list[str] = []
        updates, paths, kept = fields_to_write(self.settings.fields, ticket, result)
        labels = []
        if result.needs_review and self.settings.review_label:
            labels.append(self.settings.review_label)
        if self.settings.label_prefix:
            labels.append(f"{self.settings.label_prefix}{result.category}".replace(" ", "-"))
        labels = [label for label in labels if label not in (ticket.current.get("labels") or [])]
        if updates or labels:
            body: dict[str, Any] = {"fields": updates}
            if labels:
                body["update"] = {"labels": [{"add": label} for label in labels]}
            self.client.request("PUT", f"/rest/api/3/issue/{ticket.key}", params={"notifyUsers": "false"}, json=body)
            written += [f"jira:{ticket.key}:{name}" for name in [*paths, *(f"label:{lb}" for lb in labels)]]
        written += [f"jira:{ticket.key}:kept-human-value:{name}" for name in kept]
        if add_note_once(self._notes(ticket.key), lambda note: self._add_note(ticket.key, note), result, marker):
            written.append(f"jira:{ticket.key}:note")
        return written

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
