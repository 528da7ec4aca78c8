"""A fake Zoho accounts server and a fake Zoho Desk, following Zoho's human API references
(desk.zoho.com/DeskAPIDocument, www.zoho.com/accounts/protocol/oauth/self-client; no machine-readable
spec exists: ../shared/specs/zoho-desk/NOTES.txt):

- accounts: `POST /oauth/v2/token?refresh_token&client_id&client_secret&grant_type=refresh_token` answers
  `{access_token, api_domain, token_type, expires_in}`, or `{"error": "invalid_code"}` (status 200);
- Desk, under /api/v1, with `Authorization: Zoho-oauthtoken <token>` (401 `INVALID_OAUTH` otherwise) and
  the `orgId` header (422 without it):
  - `GET /tickets?from&limit(<=100)&sortBy` (`-` prefix for descending; a `sortOrder` parameter is
    refused with 422): `{"data": [...]}`, or 204 with no body when there is nothing;
  - `GET /tickets/{id}`; `PATCH /tickets/{id}` (a partial update; unknown fields are a 422);
  - `GET`/`POST /tickets/{id}/comments` (`{content, contentType, isPublic}`; list `{"data": [...]}`);
- errors as `{errorCode, message}`."""

import itertools
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.faults import FaultyServer

EDITABLE = {"subject", "description", "category", "subCategory", "priority", "classification", "teamId", "status", "cf"}


@dataclass
class FakeZohoAccounts:
    client_id: str = "1000.CLIENT"
    client_secret: str = "client-secret"
    refresh_token: str = "1000.refresh"
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)

    def valid(self, authorization: str | None) -> bool:
        token = (authorization or "").removeprefix("Zoho-oauthtoken ")
        return token in self.issued and token not in self.revoked

    def expire_all(self) -> None:
        self.revoked.update(self.issued)

    def install(self, app: FastAPI) -> None:
        @app.post("/oauth/v2/token")
        async def token(refresh_token: str, client_id: str, client_secret: str, grant_type: str) -> Any:
            wanted = (self.refresh_token, self.client_id, self.client_secret, "refresh_token")
            if (refresh_token, client_id, client_secret, grant_type) != wanted:
                return {"error": "invalid_code"}
            access = f"1000.access-{len(self.issued) + 1}"
            self.issued.append(access)
            return {
                "access_token": access,
                "api_domain": "https://www.zohoapis.com",
                "token_type": "Bearer",
                "expires_in": 3600,
            }


def zoho_error(status: int) -> dict[str, Any]:
    codes = {401: "INVALID_OAUTH", 404: "URL_NOT_FOUND", 422: "UNPROCESSABLE_ENTITY", 429: "TOO_MANY_REQUESTS"}
    return {"errorCode": codes.get(status, "INTERNAL_SERVER_ERROR"), "message": f"injected {status}"}


@dataclass
class FakeZohoDesk(FaultyServer):
    org_id: str = "2389290"
    accounts: FakeZohoAccounts = field(default_factory=FakeZohoAccounts)
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1892000000042034))

    def add_ticket(self, subject: str, description: str, created: str, **fields: Any) -> str:
        with self.lock:
            ticket_id = str(next(self._ids))
            self.tickets[ticket_id] = {
                "id": ticket_id,
                "ticketNumber": str(100 + len(self.tickets)),
                "subject": subject,
                "description": "<div>" + description.replace("\n", "<br>") + "</div>",
                "createdTime": created,
                "departmentId": "1892000000006907",
                "status": "Open",
                "category": None,
                "subCategory": None,
                "priority": None,
                "classification": None,
                "teamId": None,
                "cf": {"cf_application": None},
                **fields,
            }
            self.comments[ticket_id] = []
            return ticket_id

    def _unauthorized(self, request: Request) -> Response | None:
        if request.url.path.startswith("/oauth/"):
            return None
        if not self.accounts.valid(request.headers.get("authorization")):
            body = {"errorCode": "INVALID_OAUTH", "message": "The OAuth Token you provided is invalid."}
            return JSONResponse(body, status_code=401)
        if request.headers.get("orgid") != self.org_id:
            return JSONResponse({"errorCode": "UNPROCESSABLE_ENTITY", "message": "orgId is missing"}, status_code=422)
        return None

    def app(self) -> FastAPI:
        app = FastAPI()
        self.install(app, self._unauthorized, zoho_error)
        self.accounts.install(app)

        def missing() -> JSONResponse:
            return JSONResponse(zoho_error(404), status_code=404)

        @app.get("/api/v1/tickets")
        async def list_tickets(request: Request) -> Any:
            query = request.query_params
            if "sortOrder" in query or int(query.get("limit", 10)) > 100:
                return JSONResponse(zoho_error(422), status_code=422)
            sort = query.get("sortBy", "createdTime")
            with self.lock:
                rows = sorted(self.tickets.values(), key=lambda t: t[sort.lstrip("-")], reverse=sort.startswith("-"))
            start, limit = int(query.get("from", 0)), int(query.get("limit", 10))
            page = [{k: v for k, v in t.items() if k != "description"} for t in rows[start : start + limit]]
            return {"data": page} if page else Response(status_code=204)

        @app.get("/api/v1/tickets/{ticket_id}")
        async def get_ticket(ticket_id: str) -> Any:
            return self.tickets.get(ticket_id) or missing()

        @app.patch("/api/v1/tickets/{ticket_id}")
        async def update_ticket(ticket_id: str, request: Request) -> Any:
            body = await request.json()
            if ticket_id not in self.tickets:
                return missing()
            if not isinstance(body, dict) or set(body) - EDITABLE:
                return JSONResponse(zoho_error(422), status_code=422)
            with self.lock:
                ticket = self.tickets[ticket_id]
                ticket["cf"] = {**ticket["cf"], **body.pop("cf", {})}
                ticket.update(body)
                self.edits.append((ticket_id, body))
            return ticket

        @app.get("/api/v1/tickets/{ticket_id}/comments")
        async def list_comments(ticket_id: str, request: Request) -> Any:
            if ticket_id not in self.comments:
                return missing()
            start, limit = int(request.query_params.get("from", 0)), int(request.query_params.get("limit", 50))
            page = self.comments[ticket_id][start : start + limit]
            return {"data": page} if page else Response(status_code=204)

        @app.post("/api/v1/tickets/{ticket_id}/comments")
        async def add_comment(ticket_id: str, request: Request) -> Any:
            body = await request.json()
            if ticket_id not in self.comments:
                return missing()
            if set(body) - {"content", "contentType", "isPublic"} or body.get("contentType") not in (
                "html",
                "plainText",
            ):
                return JSONResponse(zoho_error(422), status_code=422)
            with self.lock:
                comment = {"id": str(len(self.comments[ticket_id]) + 1), "commentedTime": "2026-11-24T09:00:00.000Z"}
                comment.update(body)
                self.comments[ticket_id].append(comment)
            return comment

        return app
