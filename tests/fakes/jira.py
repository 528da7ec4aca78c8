"""A fake Jira Cloud site, following Atlassian's REST API v3 reference (developer.atlassian.com/cloud/jira/
platform/rest/v3, the OpenAPI spec in ../shared/specs/jira/) and the Jira Service Management request
comment API (/rest/servicedeskapi/request/{key}/comment):

- basic auth `email:api_token`, 401 otherwise;
- `POST /rest/api/3/search/jql` (searchAndReconsileIssuesUsingJqlPost): `{jql, maxResults, fields,
  nextPageToken}` in, `{issues, nextPageToken, isLast}` out (no total; no token on the last page);
- `GET /rest/api/3/issue/{key}` (getIssue), description in Atlassian Document Format;
- `PUT /rest/api/3/issue/{key}` (editIssue) with `{fields, update: {labels: [{add}]}}`, 204;
- `GET`/`POST /rest/api/3/issue/{key}/comment` (getComments / addComment, ADF bodies);
- `GET`/`POST /rest/servicedeskapi/request/{key}/comment` (`{body, public}`; paged `{values, isLastPage}`).

Every request body and answer is checked against the spec when it is available (`spec_errors`).
`faults` injects failures (tests/fakes/faults.py)."""

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes import openapi_spec
from tests.fakes.faults import FaultyServer


@dataclass
class FakeJira(FaultyServer):
    email: str = "bot@example.com"
    token: str = "secret-token"
    project: str = "IT"
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    jsm_comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    spec_errors: list[str] = field(default_factory=list)

    def add_issue(self, summary: str, description: str, **fields: Any) -> str:
        with self.lock:
            number = len(self.issues) + 1
            key = f"{self.project}-{number}"
            paragraphs = [
                {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in description.split("\n")
            ]
            self.issues[key] = {
                "id": str(10000 + number),
                "key": key,
                "fields": {
                    "summary": summary,
                    "description": {"type": "doc", "version": 1, "content": paragraphs},
                    "labels": [],
                    "created": f"2026-11-24T08:{number // 60 % 60:02d}:{number % 60:02d}.000+0000",
                    **fields,
                },
            }
            self.comments[key] = []
            self.jsm_comments[key] = []
            return key

    def check(self, operation_id: str, body: Any, status: int | None = None) -> None:
        if not openapi_spec.available():
            return
        errors = (
            openapi_spec.response_errors(operation_id, status, body)
            if status is not None
            else openapi_spec.request_errors(operation_id, body)
        )
        self.spec_errors += [f"{operation_id}: {e}" for e in errors]

    def issue_bean(self, key: str, base: str, wanted: list[str] | None) -> dict[str, Any]:
        issue = self.issues[key]
        fields = issue["fields"] if not wanted else {k: v for k, v in issue["fields"].items() if k in wanted}
        return {"id": issue["id"], "key": key, "self": f"{base}/rest/api/3/issue/{issue['id']}", "fields": fields}

    def _unauthorized(self, request: Request) -> Response | None:
        expected = "Basic " + base64.b64encode(f"{self.email}:{self.token}".encode()).decode()
        if request.headers.get("authorization") == expected:
            return None
        return JSONResponse({"errorMessages": ["You are not authenticated."], "errors": {}}, status_code=401)

    def app(self) -> FastAPI:
        app = FastAPI()

        self.install(app, self._unauthorized, lambda status: {"errorMessages": [f"injected {status}"], "errors": {}})

        @app.post("/rest/api/3/search/jql")
        async def search(request: Request) -> Any:
            body = await request.json()
            self.check("searchAndReconsileIssuesUsingJqlPost", body)
            jql = body.get("jql", "")
            match = re.fullmatch(r'project = "(\w+)" AND (?:key > "(\w+-\d+)"|created >= -\d+d) ORDER BY key ASC', jql)
            if match is None or match.group(1) != self.project:
                return JSONResponse({"errorMessages": [f"unsupported JQL: {jql}"], "errors": {}}, status_code=400)
            after = int(match.group(2).split("-")[1]) if match.group(2) else 0
            with self.lock:
                keys = sorted((k for k in self.issues if int(k.split("-")[1]) > after), key=lambda k: int(k[3:]))
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

        @app.get("/rest/api/3/issue/{key}")
        async def get_issue(key: str, request: Request, fields: str | None = None) -> Any:
            if key not in self.issues:
                return JSONResponse({"errorMessages": ["Issue does not exist"], "errors": {}}, status_code=404)
            bean = self.issue_bean(key, str(request.base_url).rstrip("/"), fields.split(",") if fields else None)
            self.check("getIssue", bean, 200)
            return bean

        @app.put("/rest/api/3/issue/{key}")
        async def edit_issue(key: str, request: Request) -> Response:
            body = await request.json()
            self.check("editIssue", body)
            if key not in self.issues:
                return JSONResponse({"errorMessages": ["Issue does not exist"], "errors": {}}, status_code=404)
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

        @app.get("/rest/api/3/issue/{key}/comment")
        async def get_comments(key: str, startAt: int = 0, maxResults: int = 50) -> Any:
            if key not in self.issues:
                return JSONResponse({"errorMessages": ["Issue does not exist"], "errors": {}}, status_code=404)
            comments = self.comments[key]
            page = comments[startAt : startAt + maxResults]
            result = {"comments": page, "startAt": startAt, "maxResults": maxResults, "total": len(comments)}
            self.check("getComments", result, 200)
            return result

        @app.post("/rest/api/3/issue/{key}/comment", status_code=201)
        async def add_comment(key: str, request: Request) -> Any:
            body = await request.json()
            self.check("addComment", body)
            if key not in self.issues:
                return JSONResponse({"errorMessages": ["Issue does not exist"], "errors": {}}, status_code=404)
            if body.get("body", {}).get("type") != "doc":
                self.spec_errors.append("addComment: body must be an ADF document")
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
