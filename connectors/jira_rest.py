"""What Jira Cloud (REST v3) and Jira Data Center / Server (REST v2) share, so each connector module
holds only its differences: authentication, the search call, and the markup of text.

- Polling: a bounded JQL (`project = P AND key > "P-123" ORDER BY key ASC`); the cursor is the last
  key seen, so no ticket is skipped whatever the time zones (JQL dates are minute-precise and read in
  the bot user's zone; keys only grow).
- Reading: `GET <api>/issue/{key}`; the text is the summary plus the description.
- Writing: `PUT <api>/issue/{key}?notifyUsers=false` with the mapped fields that are still empty and
  the review label; then the note, once: a comment on `<api>/issue/{key}/comment` or, with
  `internal_note: jsm`, an internal `{"public": false}` comment on
  `/rest/servicedeskapi/request/{key}/comment`. The note carries the job's marker, and an existing
  note with that marker is never added again.
- Webhooks: admin webhooks with a secret sign the body (`X-Hub-Signature`), on Cloud and on Data
  Center 10 alike; `jira:issue_created` events of the configured project enqueue the issue key."""

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from ticketsmith.connectors.http_api import ApiClient
from ticketsmith.connectors.itsm import ItsmSettings, NoteWritingConnector, RemoteTicket
from ticketsmith.connectors.webhooks import WebhookCall, WebhookNews, check_hmac_signature
from ticketsmith.runtime.schema import TriageResult


class JiraProjectSettings(ItsmSettings):
    """One Jira project, on any deployment."""

    base_url: str = Field(description="the site's address, with its context path if any")
    project: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    review_label: str | None = Field("ticketsmith-review", description="label added to needs-review tickets")
    label_prefix: str | None = Field(None, description="also add `<prefix><category>` as a label")
    internal_note: Literal["comment", "jsm"] = "comment"


class JiraRestConnector(NoteWritingConnector):
    """A Jira project through the REST API at `api` (`/rest/api/3` or `/rest/api/2`)."""

    api: str
    client_name: str  # in error messages: "jira", "jira data center"
    settings: JiraProjectSettings

    def __init__(self, settings: JiraProjectSettings, client: ApiClient | None = None) -> None:
        self.settings = settings
        self.source = f"{self.system}:{settings.project}"
        self.client = client or ApiClient(self.client_name, settings.base_url, self._auth, settings.timeout_s)

    @abstractmethod
    def _auth(self) -> dict[str, str]: ...

    @abstractmethod
    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        """The keys `_jql(cursor)` selects, through this API's search call and paging."""

    @abstractmethod
    def _text(self, body: Any) -> str:
        """The readable text of a description or comment body in this API's markup."""

    @abstractmethod
    def _comment_body(self, text: str) -> Any:
        """An issue comment's body in this API's markup."""

    def _jsm_body(self, text: str) -> str:
        """A Jira Service Management comment's body, always a string."""
        return text

    def close(self) -> None:
        self.client.close()

    def _jql(self, cursor: str | None) -> str:
        project = self.settings.project
        if cursor:
            return f'project = "{project}" AND key > "{cursor}" ORDER BY key ASC'
        return f'project = "{project}" AND created >= -{self.settings.first_poll_days}d ORDER BY key ASC'

    def fetch(self, key: str) -> RemoteTicket:
        wanted = ["summary", "description", "labels", *(t.field for t in self.settings.fields.values())]
        issue = self.client.json("GET", f"{self.api}/issue/{key}", params={"fields": ",".join(wanted)})
        fields = issue.get("fields") or {}
        text = "\n".join(part for part in (fields.get("summary") or "", self._text(fields.get("description"))) if part)
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
        self.client.request("PUT", f"{self.api}/issue/{ticket.key}", params={"notifyUsers": "false"}, json=body)
        return [*paths, *(f"label:{label}" for label in labels)]

    def _add_note(self, key: str, note: str) -> None:
        if self.settings.internal_note == "jsm":
            body = {"body": self._jsm_body(note), "public": False}
            self.client.request("POST", f"/rest/servicedeskapi/request/{key}/comment", json=body)
        else:
            self.client.request("POST", f"{self.api}/issue/{key}/comment", json={"body": self._comment_body(note)})

    def _notes(self, key: str) -> Iterator[str]:
        jsm = self.settings.internal_note == "jsm"
        path = f"/rest/servicedeskapi/request/{key}/comment" if jsm else f"{self.api}/issue/{key}/comment"
        list_key = "values" if jsm else "comments"
        start = 0
        while True:
            params = {"start": start, "limit": 100} if jsm else {"startAt": start, "maxResults": 100}
            page = self.client.json("GET", path, params=params)
            comments = page.get(list_key) or []
            yield from (self._text(c.get("body")) for c in comments)
            start += len(comments)
            if not comments or page.get("isLastPage", start >= int(page.get("total", start))):
                return


def read_webhook(settings: JiraProjectSettings, call: WebhookCall) -> WebhookNews:
    """The issue a verified `jira:issue_created` event of this project announces."""
    check_hmac_signature(call)
    event = call.json()
    if not isinstance(event, dict) or event.get("webhookEvent") != "jira:issue_created":
        return WebhookNews()
    key = str((event.get("issue") or {}).get("key") or "")
    return WebhookNews(keys=[key] if key.startswith(f"{settings.project}-") else [])
