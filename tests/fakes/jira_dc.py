"""A fake Jira Data Center / Server site, following Atlassian's Jira Data Center REST API v2 reference
(docs.atlassian.com/software/jira/docs/api/REST/<version>/, "Personal access tokens" and "Rate
limiting" in the Jira administration docs) and the Jira Service Management Data Center request
comment API; the routes it shares with the Cloud fake are in tests/fakes/jira_site.py.

- personal access tokens: `Authorization: Bearer <PAT>`, 401 with Jira's error body otherwise;
- `POST /rest/api/2/search`: `{jql, startAt, maxResults, fields}` in, `{expand, startAt, maxResults,
  total, issues}` out; the server caps `maxResults` (`max_results`, 1000 by default as in
  `jira.search.views.default.max`) and says so in the answer;
- descriptions and comment bodies are wiki-markup strings, never ADF documents.

No machine-readable reference exists for Data Center: the shapes are checked by hand here, and a
wrong one lands in `spec_errors`. `faults` injects failures (tests/fakes/faults.py); `before_page`
runs before each search page is answered (a test deletes an issue mid-listing with it)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.fakes.jira_site import FakeJiraSite, jira_error

SEARCH_KEYS = {"jql", "startAt", "maxResults", "fields", "validateQuery", "expand", "properties", "fieldsByKeys"}


@dataclass
class FakeJiraDc(FakeJiraSite):
    api_version: str = "2"
    token: str = "pat-secret"
    max_results: int = 1000
    before_page: Callable[[int], None] | None = None

    def description(self, text: str) -> Any:
        return text

    def comment_body_error(self, body: Any) -> str | None:
        return None if isinstance(body, str) and body.strip() else "Comment body can not be empty!"

    def unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return jira_error(401, "You are not authenticated. Authentication required to perform this operation.")

    def install_search(self, app: FastAPI) -> None:
        @app.post("/rest/api/2/search")
        async def search(request: Request) -> Any:
            body = await request.json()
            if unknown := set(body) - SEARCH_KEYS:
                self.spec_errors.append(f"search: unknown keys {sorted(unknown)}")
            start, wanted = int(body.get("startAt", 0)), int(body.get("maxResults", 50))
            if self.before_page is not None:
                self.before_page(start)
            keys = self.search(body.get("jql", ""))
            if keys is None:
                return jira_error(400, f"Error in the JQL Query: unsupported query {body.get('jql')!r}")
            size = min(wanted, self.max_results)
            base = str(request.base_url).rstrip("/")
            return {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(keys),
                "issues": [self.issue_bean(k, base, body.get("fields")) for k in keys[start : start + size]],
            }
