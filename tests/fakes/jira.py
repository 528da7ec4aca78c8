"""A fake Jira Cloud site, following Atlassian's REST API v3 reference (developer.atlassian.com/cloud/jira/
platform/rest/v3, the OpenAPI spec in ../shared/specs/jira/) and the Jira Service Management request
comment API; the routes it shares with the Data Center fake are in tests/fakes/jira_site.py.

- basic auth `email:api_token`, 401 otherwise;
- `POST /rest/api/3/search/jql` (searchAndReconsileIssuesUsingJqlPost): `{jql, maxResults, fields,
  nextPageToken}` in, `{issues, nextPageToken, isLast}` out (no total; no token on the last page);
- descriptions and comment bodies in Atlassian Document Format.

Every request body and answer is checked against the spec when it is available (`spec_errors`).
`faults` injects failures (tests/fakes/faults.py)."""

import base64
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.fakes import openapi_spec
from tests.fakes.jira_site import FakeJiraSite, jira_error


@dataclass
class FakeJira(FakeJiraSite):
    email: str = "bot@example.com"
    token: str = "secret-token"

    def description(self, text: str) -> Any:
        paragraphs = [{"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in text.split("\n")]
        return {"type": "doc", "version": 1, "content": paragraphs}

    def comment_body_error(self, body: Any) -> str | None:
        return None if isinstance(body, dict) and body.get("type") == "doc" else "body must be an ADF document"

    def check(self, operation_id: str, body: Any, status: int | None = None) -> None:
        if not openapi_spec.available():
            return
        errors = (
            openapi_spec.response_errors(operation_id, status, body)
            if status is not None
            else openapi_spec.request_errors(operation_id, body)
        )
        self.spec_errors += [f"{operation_id}: {e}" for e in errors]

    def unauthorized(self, request: Request) -> Response | None:
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if request.headers.get("authorization") == expected:
            return None
        return jira_error(401, "You are not authenticated.")

    def install_search(self, app: FastAPI) -> None:
        @app.post("/rest/api/3/search/jql")
        async def search(request: Request) -> Any:
            body = await request.json()
            self.check("searchAndReconsileIssuesUsingJqlPost", body)
            keys = self.search(body.get("jql", ""))
            if keys is None:
                return jira_error(400, f"unsupported JQL: {body.get('jql')}")
            start = int(body.get("nextPageToken") or 0)
            size = int(body.get("maxResults", 50))
            page = keys[start : start + size]
            base = str(request.base_url).rstrip("/")
            result: dict[str, Any] = {
                "issues": [self.issue_bean(k, base, body.get("fields")) for k in page],
                "isLast": start + size >= len(keys),
            }
            if not result["isLast"]:
                result["nextPageToken"] = str(start + size)
            self.check("searchAndReconsileIssuesUsingJqlPost", result, 200)
            return result
