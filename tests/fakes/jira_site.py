"""What the fake Jira Cloud (tests/fakes/jira.py) and the fake Jira Data Center (tests/fakes/jira_dc.py)
share: issues with their comments and Jira Service Management comments, and the routes whose shape
is the same in REST v2 and v3 at `/rest/api/<version>`:

- `GET /issue/{key}` (getIssue) and `PUT /issue/{key}` (editIssue) with `{fields, update: {labels:
  [{add}]}}`, 204;
- `GET`/`POST /issue/{key}/comment` (getComments / addComment; paged `{comments, startAt, maxResults,
  total}`);
- `GET`/`POST /rest/servicedeskapi/request/{key}/comment` (`{body, public}`; paged `{values,
  isLastPage}`).

Errors are Jira's `{"errorMessages": [...], "errors": {...}}`. A subclass gives the search route, the
credentials check, the markup of descriptions and comment bodies, and optionally spec checks."""

import re
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.faults import FaultyServer


def jira_error(status: int, *messages: str, **errors: str) -> JSONResponse:
    return JSONResponse({"errorMessages": list(messages), "errors": errors}, status_code=status)


@dataclass
class FakeJiraSite(FaultyServer):
    api_version: str = "3"
    project: str = "IT"
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    jsm_comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    spec_errors: list[str] = field(default_factory=list)

    @abstractmethod
    def description(self, text: str) -> Any:
        """A description field holding `text`, in this API's markup."""

    @abstractmethod
    def comment_body_error(self, body: Any) -> str | None:
        """Why `body` is not a comment body in this API's markup, or None."""

    @abstractmethod
    def unauthorized(self, request: Request) -> Response | None: ...

    @abstractmethod
    def install_search(self, app: FastAPI) -> None: ...

    def check(self, operation_id: str, body: Any, status: int | None = None) -> None:
        """Check a request (or, with `status`, an answer) against the published spec, where there is one."""

    @property
    def api(self) -> str:
        return f"/rest/api/{self.api_version}"

    def add_issue(self, summary: str, description: str, **fields: Any) -> str:
        with self.lock:
            number = len(self.issues) + 1
            key = f"{self.project}-{number}"
            self.issues[key] = {
                "id": str(10000 + number),
                "key": key,
                "fields": {
                    "summary": summary,
                    "description": self.description(description),
                    "labels": [],
                    "created": f"2026-11-24T08:{number // 60 % 60:02d}:{number % 60:02d}.000+0000",
                    **fields,
                },
            }
            self.comments[key] = []
            self.jsm_comments[key] = []
            return key

    def search(self, jql: str) -> list[str] | None:
        """The keys the connectors' bounded JQL selects, in key order; None for any other JQL."""
        match = re.fullmatch(r'project = "(\w+)" AND (?:key > "(\w+-\d+)"|created >= -\d+d) ORDER BY key ASC', jql)
        if match is None or match.group(1) != self.project:
            return None
        after = int(match.group(2).split("-")[1]) if match.group(2) else 0
        with self.lock:
            numbers = sorted(int(k.split("-")[1]) for k in self.issues if int(k.split("-")[1]) > after)
        return [f"{self.project}-{n}" for n in numbers]

    def issue_bean(self, key: str, base: str, wanted: list[str] | None) -> dict[str, Any]:
        issue = self.issues[key]
        fields = issue["fields"] if not wanted else {k: v for k, v in issue["fields"].items() if k in wanted}
        return {"id": issue["id"], "key": key, "self": f"{base}{self.api}/issue/{issue['id']}", "fields": fields}

    def app(self) -> FastAPI:
        app = FastAPI()
        self.install(app, self.unauthorized, lambda status: {"errorMessages": [f"injected {status}"], "errors": {}})
        self.install_search(app)
        api = self.api

        @app.get(api + "/issue/{key}")
        async def get_issue(key: str, request: Request, fields: str | None = None) -> Any:
            if key not in self.issues:
                return jira_error(404, "Issue Does Not Exist")
            bean = self.issue_bean(key, str(request.base_url).rstrip("/"), fields.split(",") if fields else None)
            self.check("getIssue", bean, 200)
            return bean

        @app.put(api + "/issue/{key}")
        async def edit_issue(key: str, request: Request) -> Response:
            body = await request.json()
            self.check("editIssue", body)
            if key not in self.issues:
                return jira_error(404, "Issue Does Not Exist")
            if request.query_params.get("notifyUsers") != "false":
                self.spec_errors.append("editIssue: expected notifyUsers=false")
            with self.lock:
                fields = self.issues[key]["fields"]
                fields.update(body.get("fields", {}))
                for operation in body.get("update", {}).get("labels", []):
                    if operation.get("add") not in fields["labels"]:
                        fields["labels"].append(operation["add"])
                self.edits.append((key, body))
            return Response(status_code=204)

        @app.get(api + "/issue/{key}/comment")
        async def get_comments(key: str, startAt: int = 0, maxResults: int = 50) -> Any:
            if key not in self.issues:
                return jira_error(404, "Issue Does Not Exist")
            comments = self.comments[key]
            page = comments[startAt : startAt + maxResults]
            result = {"comments": page, "startAt": startAt, "maxResults": maxResults, "total": len(comments)}
            self.check("getComments", result, 200)
            return result

        @app.post(api + "/issue/{key}/comment", status_code=201)
        async def add_comment(key: str, request: Request) -> Any:
            body = await request.json()
            self.check("addComment", body)
            if key not in self.issues:
                return jira_error(404, "Issue Does Not Exist")
            error = self.comment_body_error(body.get("body"))
            if error is not None:
                self.spec_errors.append(f"addComment: {error}")
                return jira_error(400, comment=error)
            with self.lock:
                comment = {
                    "id": str(len(self.comments[key]) + 1),
                    "body": body["body"],
                    "created": "2026-11-24T09:00:00.000+0000",
                }
                self.comments[key].append(comment)
            return comment

        @app.get("/rest/servicedeskapi/request/{key}/comment")
        async def get_jsm_comments(key: str, start: int = 0, limit: int = 50) -> Any:
            values = self.jsm_comments.get(key, [])[start : start + limit]
            return {
                "size": len(values),
                "start": start,
                "limit": limit,
                "isLastPage": start + limit >= len(self.jsm_comments.get(key, [])),
                "values": values,
            }

        @app.post("/rest/servicedeskapi/request/{key}/comment", status_code=201)
        async def add_jsm_comment(key: str, request: Request) -> Any:
            body = await request.json()
            if set(body) != {"body", "public"} or not isinstance(body["body"], str):
                return JSONResponse({"errorMessage": "bad comment"}, status_code=400)
            with self.lock:
                comment = {"id": str(len(self.jsm_comments[key]) + 1), "body": body["body"], "public": body["public"]}
                self.jsm_comments[key].append(comment)
            return comment

        return app
