"""A fake ManageEngine ServiceDesk Plus, API v3, following the vendor's references
(manageengine.com/products/service-desk/sdpop-v3-api/ for on-premises, .../sdpod-v3-api/ for Cloud;
no machine-readable spec exists: ../shared/specs/servicedesk-plus/NOTES.txt):

- on-premises `authtoken: <key>`, or Cloud `Authorization: Zoho-oauthtoken` from the Zoho accounts fake;
  `Accept: application/vnd.manageengine.sdp.v3+json` required;
- `GET /requests?input_data={"list_info": {row_count<=100, start_index, sort_field, sort_order,
  search_criteria}}`: `{requests, list_info: {has_more_rows}, response_status: [{status_code: 2000}]}`;
- `GET /requests/{id}`: `{request, response_status: {status_code: 2000, status: success}}`;
- `PUT /requests/{id}` with form field `input_data={"request": {...}}`; lookups (category, priority,
  group, ...) are `{"name": ...}` objects and must name an existing value (4001 otherwise);
- `GET`/`POST /requests/{id}/notes` (wrapper `request_note(s)` on Cloud, `note(s)` on-premises);
- errors: `response_status: {status_code: 4000, messages: [{status_code: 4007, message}], status: failed}`
  (4001 bad value, 4007 not found, 4015 rate limit, 4022 invalid key), sometimes inside an HTTP 200."""

import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fakes.faults import FaultyServer
from tests.fakes.zoho import FakeZohoAccounts

ACCEPT = "application/vnd.manageengine.sdp.v3+json"
LOOKUPS = ("category", "subcategory", "item", "priority", "urgency", "impact", "group")
OK = {"status_code": 2000, "status": "success"}


def sdp_error(code: int, message: str = "") -> dict[str, Any]:
    messages = [{"status_code": code, "type": "failed", "message": message or f"error {code}"}]
    return {"response_status": {"status_code": 4000, "messages": messages, "status": "failed"}}


def http_error(status: int) -> dict[str, Any]:
    return sdp_error({401: 4022, 403: 4002, 404: 4007, 429: 4015}.get(status, 4004), f"injected {status}")


@dataclass
class FakeServiceDeskPlus(FaultyServer):
    edition: Literal["onprem", "cloud"] = "onprem"
    auth_token: str = "6F00-TECH-KEY"
    accounts: FakeZohoAccounts = field(default_factory=FakeZohoAccounts)
    lookups: dict[str, set[str]] = field(default_factory=dict)  # allowed names per lookup field; absent = any
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    edits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(234759602834500))

    @property
    def note_key(self) -> str:
        return "request_note" if self.edition == "cloud" else "note"

    def add_request(self, subject: str, description: str, created_ms: int, **fields: Any) -> str:
        with self.lock:
            request_id = str(next(self._ids))
            self.requests[request_id] = {
                "id": request_id,
                "subject": subject,
                "description": "<div>" + description.replace("\n", "<br />") + "</div>",
                "created_time": {"value": str(created_ms), "display_value": "24/11/2026 08:00 AM"},
                "status": {"name": "Open", "id": "2"},
                **{name: None for name in LOOKUPS},
                "udf_fields": {"udf_sline_301": None},
                **fields,
            }
            self.notes[request_id] = []
            return request_id

    def _unauthorized(self, request: Request) -> Response | None:
        if request.url.path.startswith("/oauth/"):
            return None
        if self.edition == "cloud":
            allowed = self.accounts.valid(request.headers.get("authorization"))
        else:
            allowed = request.headers.get("authtoken") == self.auth_token
        if not allowed:
            return JSONResponse(sdp_error(4022, "Invalid API key"), status_code=401)
        if request.headers.get("accept") != ACCEPT:
            return JSONResponse(sdp_error(4000, "Accept header must be " + ACCEPT), status_code=400)
        return None

    def _bad_lookup(self, changes: dict[str, Any]) -> str | None:
        for name in LOOKUPS:
            if name not in changes:
                continue
            value = changes[name]
            if not isinstance(value, dict) or not value.get("name"):
                return f"{name} must be an object with a name"
            if name in self.lookups and value["name"] not in self.lookups[name]:
                return f"{name} '{value['name']}' does not exist"
        return None

    def app(self) -> FastAPI:
        app = FastAPI()
        self.install(app, self._unauthorized, http_error)
        self.accounts.install(app)

        def missing() -> JSONResponse:
            return JSONResponse(sdp_error(4007, "Invalid URL or Resource not found"), status_code=404)

        def input_data(raw: str | None) -> dict[str, Any]:
            value = json.loads(raw or "{}")
            return value if isinstance(value, dict) else {}

        @app.get("/requests")
        async def list_requests(request: Request) -> Any:
            info = input_data(request.query_params.get("input_data")).get("list_info", {})
            row_count, start = int(info.get("row_count", 10)), int(info.get("start_index", 1))
            if row_count > 100:
                return JSONResponse(sdp_error(4012, "row_count cannot exceed 100"), status_code=400)
            rows = sorted(self.requests.values(), key=lambda r: int(r["created_time"]["value"]))
            criteria = info.get("search_criteria")
            if criteria:
                if (criteria.get("field"), criteria.get("condition")) != ("created_time", "greater than"):
                    return JSONResponse(sdp_error(4001, "unsupported search criteria"), status_code=400)
                rows = [r for r in rows if int(r["created_time"]["value"]) > int(criteria["value"])]
            if info.get("sort_order") == "desc":
                rows.reverse()
            page = rows[start - 1 : start - 1 + row_count]
            list_info = {**info, "has_more_rows": start - 1 + row_count < len(rows), "row_count": len(page)}
            return {"requests": page, "list_info": list_info, "response_status": [OK]}

        @app.get("/requests/{request_id}")
        async def get_request(request_id: str) -> Any:
            if request_id not in self.requests:
                return missing()
            return {"request": self.requests[request_id], "response_status": OK}

        @app.put("/requests/{request_id}")
        async def update_request(request_id: str, request: Request) -> Any:
            form = await request.form()
            changes = input_data(str(form.get("input_data"))).get("request")
            if request_id not in self.requests:
                return missing()
            if not isinstance(changes, dict):
                return JSONResponse(sdp_error(4000, "input_data must hold a request"), status_code=400)
            problem = self._bad_lookup(changes)
            if problem:
                return JSONResponse(sdp_error(4001, problem), status_code=400)
            with self.lock:
                stored = self.requests[request_id]
                stored["udf_fields"] = {**stored["udf_fields"], **changes.pop("udf_fields", {})}
                stored.update(changes)
                self.edits.append((request_id, changes))
            return {"request": stored, "response_status": OK}

        @app.get("/requests/{request_id}/notes")
        async def list_notes(request_id: str, request: Request) -> Any:
            if request_id not in self.notes:
                return missing()
            info = input_data(request.query_params.get("input_data")).get("list_info", {})
            row_count, start = int(info.get("row_count", 10)), int(info.get("start_index", 1))
            notes = self.notes[request_id]
            page = notes[start - 1 : start - 1 + row_count]
            list_info = {"has_more_rows": start - 1 + row_count < len(notes), "row_count": len(page)}
            return {f"{self.note_key}s": page, "list_info": list_info, "response_status": [OK]}

        @app.post("/requests/{request_id}/notes")
        async def add_note(request_id: str, request: Request) -> Any:
            form = await request.form()
            note = input_data(str(form.get("input_data"))).get(self.note_key)
            if request_id not in self.notes:
                return missing()
            if not isinstance(note, dict) or not note.get("description"):
                return JSONResponse(sdp_error(4012, f"{self.note_key}.description is mandatory"), status_code=400)
            with self.lock:
                stored = {"id": str(len(self.notes[request_id]) + 1), **note}
                self.notes[request_id].append(stored)
            return {self.note_key: stored, "response_status": OK}

        return app
