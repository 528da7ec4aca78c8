"""Jira Data Center / Server (REST API v2) connector, for sites on their own network, air-gapped
ones included; what it shares with Jira Cloud is in connectors/jira_rest.py.

- Auth: a bot user's personal access token (Jira 8.14 and later) as `Authorization: Bearer <PAT>`.
- Polling: `POST /rest/api/2/search` `{jql, startAt, maxResults, fields}` with the shared bounded
  JQL, paged by `startAt` until `total`. Offsets shift when a listed issue is deleted mid-listing, so
  a listing whose `total` changed moves the cursor only to the end of its first page; the next poll
  lists the rest again and the job store drops the repeats.
- Text: descriptions and comments are wiki markup (connectors/wiki_markup.py), JSM comments too.
- Errors: `{"errorMessages": [...], "errors": {field: message}}`; 429 (rate limiting, Jira 8.6 and
  later) carries `Retry-After`."""

from typing import Any, Literal

from pydantic import Field

from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira_rest import JiraProjectSettings, JiraRestConnector, read_webhook
from ticketsmith.connectors.registry import ConnectorKind
from ticketsmith.connectors.wiki_markup import text_to_wiki, wiki_to_text


class JiraDcSettings(JiraProjectSettings):
    kind: Literal["jira_dc"] = "jira_dc"
    base_url: str = Field(description="https://jira.example.local, with the context path if any (.../jira)")
    personal_access_token: Secret = Field(description="the bot user's personal access token, sent as Bearer")


class JiraDcConnector(JiraRestConnector):
    system = "jira_dc"
    client_name = "jira data center"
    api = "/rest/api/2"
    settings: JiraDcSettings

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.personal_access_token.get()}", "Accept": "application/json"}

    def _text(self, body: Any) -> str:
        return wiki_to_text(body)

    def _comment_body(self, text: str) -> Any:
        return text_to_wiki(text)

    def _jsm_body(self, text: str) -> str:
        return text_to_wiki(text)

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        keys: list[str] = []
        first_page_end: str | None = None
        totals: set[int] = set()
        while True:
            body = {
                "jql": self._jql(cursor),
                "startAt": len(keys),
                "maxResults": self.settings.page_size,
                "fields": ["id"],
            }
            page = self.client.json("POST", "/rest/api/2/search", json=body)
            issues = page.get("issues") or []
            keys += [str(issue["key"]) for issue in issues]
            first_page_end = first_page_end or (keys[-1] if keys else None)
            total = int(page.get("total", len(keys)))
            totals.add(total)
            if not issues or len(keys) >= total:
                break
        if len(totals) > 1:  # a later page may have slid past a deleted issue; the first cannot
            return keys, first_page_end
        return keys, (keys[-1] if keys else cursor)


CONNECTOR = ConnectorKind(
    config_key="jira_data_center",
    title="Jira Data Center / Server",
    settings=JiraDcSettings,
    connector=JiraDcConnector,
    webhook=read_webhook,
)
