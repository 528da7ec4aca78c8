"""Jira Cloud (REST API v3) connector, with Jira Service Management internal notes where present;
what it shares with Jira Data Center is in connectors/jira_rest.py.

- Auth: basic with `email:api_token`.
- Polling: `POST /rest/api/3/search/jql` with the shared bounded JQL, paged by `nextPageToken`.
- Text: descriptions and comments are Atlassian Document Format (connectors/adf.py); JSM comments
  are plain strings."""

import base64
from typing import Any, Literal

from pydantic import Field

from ticketsmith.connectors.adf import adf_to_text, text_to_adf
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira_rest import JiraProjectSettings, JiraRestConnector, read_webhook
from ticketsmith.connectors.registry import ConnectorKind


class JiraSettings(JiraProjectSettings):
    kind: Literal["jira"] = "jira"
    base_url: str = Field(description="https://<site>.atlassian.net")
    email: str
    api_token: Secret


class JiraConnector(JiraRestConnector):
    system = "jira"
    client_name = "jira"
    api = "/rest/api/3"
    settings: JiraSettings

    def _auth(self) -> dict[str, str]:
        pair = f"{self.settings.email}:{self.settings.api_token.get()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode(), "Accept": "application/json"}

    def _text(self, body: Any) -> str:
        return adf_to_text(body)

    def _comment_body(self, text: str) -> Any:
        return text_to_adf(text)

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


CONNECTOR = ConnectorKind(
    config_key="jira", title="Jira Cloud", settings=JiraSettings, connector=JiraConnector, webhook=read_webhook
)
