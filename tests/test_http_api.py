"""The HTTP side: /v1/triage, webhooks (verified; forged or replayed calls change nothing), /healthz and
/metrics, over real HTTP; /v1/triage end to end with the real model; and the worker process serving it
from its config.

Its hardening (token and body limit before parsing, errors without echo, a true OpenAPI document) is
about HTTP, not labels: those tests run on a fake triager (tests/fakes/triager.py)."""

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from ticketsmith.connectors.http_app import create_app
from ticketsmith.connectors.http_contract import TEXT_PATTERN, ValidationErrorBody
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira import JiraSettings
from ticketsmith.connectors.job_store import SqliteJobStore, StoreUnavailable
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.connectors.servicedesk_plus import ServiceDeskPlusSettings
from ticketsmith.connectors.triage_port import TicketTriager
from ticketsmith.connectors.webhooks import WebhookEndpoint
from ticketsmith.connectors.zoho_desk import ZohoDeskSettings
from ticketsmith.runtime.errors import TicketError
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.text_hygiene import clean_ticket_text
from ticketsmith.runtime.triager import Triager

TOKEN = "api-token-123"
JIRA_SECRET = "jira-hmac-secret"
SHARED_SECRET = "zoho-and-sdp-secret"


class Service:
    def __init__(self, url: str, store: SqliteJobStore, polls: list[str], triager: TicketTriager) -> None:
        self.url, self.store, self.polls, self.triager = url, store, polls, triager


@contextmanager
def running_service(triager: TicketTriager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The HTTP app with a webhook endpoint per ITSM system, served over real HTTP."""
    monkeypatch.setenv("JIRA_HOOK", JIRA_SECRET)
    monkeypatch.setenv("SHARED_HOOK", SHARED_SECRET)
    monkeypatch.setenv("DUMMY", "x")
    jira = JiraSettings(
        base_url="http://unused",
        email="e",
        api_token=Secret(env="DUMMY"),
        project="IT",
        webhook_secret=Secret(env="JIRA_HOOK"),
    )
    zoho = ZohoDeskSettings.model_validate(
        {
            "org_id": "2389290",
            "oauth": {"client_id": "c", "client_secret": {"env": "DUMMY"}, "refresh_token": {"env": "DUMMY"}},
            "webhook_secret": {"env": "SHARED_HOOK"},
        }
    )
    sdp = ServiceDeskPlusSettings(
        base_url="http://unused", auth_token=Secret(env="DUMMY"), webhook_secret=Secret(env="SHARED_HOOK")
    )
    no_hooks = JiraSettings(base_url="http://unused", email="e", api_token=Secret(env="DUMMY"), project="OPS")
    polls: list[str] = []
    webhooks = {
        ("jira", 0): WebhookEndpoint(jira, "jira:IT", lambda: polls.append("jira")),
        ("jira", 1): WebhookEndpoint(no_hooks, "jira:OPS", lambda: polls.append("ops")),
        ("zoho_desk", 0): WebhookEndpoint(zoho, "zoho_desk:2389290", lambda: polls.append("zoho")),
        ("servicedesk_plus", 0): WebhookEndpoint(sdp, "servicedesk_plus:x", lambda: polls.append("sdp")),
    }
    store = SqliteJobStore(tmp_path / "jobs.db")
    metrics = ServiceMetrics(store.counts, triager.model_info())
    triager.observers.append(metrics.observe)
    try:
        with serve(create_app(triager, store, metrics, [TOKEN], webhooks)) as url:
            yield Service(url, store, polls, triager)
    finally:
        triager.observers.remove(metrics.observe)
        store.close()


@pytest.fixture
def service(fake_triager: FakeTriager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """On the fake triager: webhooks, /healthz and /metrics are about HTTP, not labels."""
    with running_service(fake_triager, tmp_path, monkeypatch) as running:
        yield running


@pytest.fixture
def model_service(triager: Triager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """On the real model: the /v1/triage end-to-end test."""
    with running_service(triager, tmp_path, monkeypatch) as running:
        yield running


def test_triage_endpoint_needs_a_token_and_answers_a_valid_ticket(model_service: Service, triager: Triager) -> None:
    service = model_service
    body = {"text": "My laptop screen flickers since the update", "id": "T-1"}
    assert httpx.post(f"{service.url}/v1/triage", json=body).status_code == 401
    wrong = httpx.post(f"{service.url}/v1/triage", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    answer = httpx.post(
        f"{service.url}/v1/triage", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    assert answer.status_code == 200
    result = TriageResult.model_validate(answer.json(), context={"taxonomy": triager.taxonomy})
    assert result.id == "T-1" and result.subcategory in triager.taxonomy.choices("subcategory", result.category)
    empty = httpx.post(f"{service.url}/v1/triage", json={"text": "  "}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "text"]


def jira_call(url: str, event: dict[str, object], secret: str = JIRA_SECRET) -> httpx.Response:
    raw = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature": signature, "Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": "1"}
    return httpx.post(f"{url}/webhooks/jira/0", content=raw, headers=headers)


def test_jira_webhook_is_verified_and_a_replay_changes_nothing(service: Service) -> None:
    event = {
        "timestamp": 1,
        "webhookEvent": "jira:issue_created",
        "issue": {"id": "10001", "key": "IT-7", "fields": {}},
    }
    forged = jira_call(service.url, event, secret="guessed")
    assert forged.status_code == 401 and service.store.get("jira:IT", "IT-7") is None
    unsigned = httpx.post(f"{service.url}/webhooks/jira/0", json=event)
    assert unsigned.status_code == 401
    first = jira_call(service.url, event)
    assert first.status_code == 200 and first.json()["enqueued"] == ["IT-7"]
    job = service.store.get("jira:IT", "IT-7")
    assert job is not None and job.state == "new"
    replay = jira_call(service.url, event)
    assert replay.status_code == 200 and replay.json()["enqueued"] == []
    assert service.store.get("jira:IT", "IT-7") == job  # the same job, untouched
    other_project = {**event, "issue": {"key": "HR-1"}}
    assert jira_call(service.url, other_project).json()["enqueued"] == []
    updated = {**event, "webhookEvent": "jira:issue_updated", "issue": {"key": "IT-8"}}
    assert jira_call(service.url, updated).json()["enqueued"] == []
    assert httpx.post(f"{service.url}/webhooks/jira/1", json=event).status_code == 404  # no secret: not enabled
    assert httpx.post(f"{service.url}/webhooks/jira/9", json=event).status_code == 404


def test_zoho_webhook_needs_the_shared_secret_and_takes_its_orgs_new_tickets(service: Service) -> None:
    events = [
        {"eventType": "Ticket_Add", "orgId": 2389290, "eventTime": "1", "payload": {"id": "1892000000042034"}},
        {"eventType": "Ticket_Update", "orgId": 2389290, "payload": {"id": "1892000000042035"}},
        {"eventType": "Ticket_Add", "orgId": 999, "payload": {"id": "1892000000042036"}},
    ]
    hook = f"{service.url}/webhooks/zoho_desk/0"
    assert httpx.post(hook, json=events).status_code == 401
    assert httpx.post(hook, json=events, params={"secret": "wrong"}).status_code == 401
    answer = httpx.post(hook, json=events, params={"secret": SHARED_SECRET})
    assert answer.status_code == 200 and answer.json()["enqueued"] == ["1892000000042034"]
    assert httpx.post(hook, content=b"{not json", params={"secret": SHARED_SECRET}).status_code == 400
    assert httpx.post(hook, json={"not": "a list"}, headers={"X-Ticketsmith-Secret": SHARED_SECRET}).status_code == 400


def test_sdp_webhook_is_a_signal_to_poll(service: Service) -> None:
    hook = f"{service.url}/webhooks/servicedesk_plus/0"
    assert httpx.post(hook, json={"id": "5"}).status_code == 401 and service.polls == []
    answer = httpx.post(hook, content=b"anything the admin wrote", headers={"X-Ticketsmith-Secret": SHARED_SECRET})
    assert answer.status_code == 200 and service.polls == ["sdp"]
    assert service.store.counts() == {}


def test_healthz_and_metrics(service: Service, fake_triager: FakeTriager) -> None:
    service.store.enqueue("jira:IT", "IT-1", {"key": "IT-1"})
    health = httpx.get(f"{service.url}/healthz").json()
    assert (health["status"], health["reasons"], health["jobs"]) == ("ok", [], {"new": 1})
    fake_triager.trained_fields = []  # as the embedded model untrained for its taxonomy
    health = httpx.get(f"{service.url}/healthz").json()
    assert health["status"] == "degraded" and health["jobs"] == {"new": 1}
    assert health["reasons"] == ["the model is not trained for its taxonomy: every ticket goes to review"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    httpx.post(f"{service.url}/v1/triage", json={"text": "Printer out of toner"}, headers=headers, timeout=120)
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'ticketsmith_jobs{state="new"} 1.0' in metrics and "ticketsmith_queue_depth 1.0" in metrics
    assert "ticketsmith_triage_seconds_count 1.0" in metrics
    assert any(
        line.startswith("ticketsmith_triage_total{outcome=") and line.endswith(" 1.0") for line in metrics.splitlines()
    )
    assert 'ticketsmith_model_info{model="' in metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.model  # `ticketsmith worker` loads the real model
def test_the_worker_serves_http_from_its_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "worker.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "runtime: {n_threads: 2}\n"
        f"inbox: {{root: {tmp_path / 'tickets'}}}\n"
        f"http: {{port: {port}, api_tokens: [{{env: TS_TOKEN}}], max_body_bytes: 4096}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "TS_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "ticketsmith", "worker", "--config", str(config)], env=env)
    try:
        deadline = time.time() + 120
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert time.time() < deadline and process.poll() is None, "the worker's HTTP side did not start"
                time.sleep(0.5)
        assert health.status_code == 200 and health.json()["status"] == "ok"  # the shipped default head
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/triage",
            json={"text": "Cannot log in to the VPN"},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        assert answer.status_code == 200 and answer.json()["category"]
        too_long = httpx.post(
            f"http://127.0.0.1:{port}/v1/triage",
            json={"text": "x" * 4096},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert too_long.status_code == 413  # the YAML's limit
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn exits its thread
def test_a_port_in_use_is_a_clear_error() -> None:
    from fastapi import FastAPI

    from ticketsmith.connectors.http_app import serve_in_thread
    from ticketsmith.runtime.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve HTTP on 127.0.0.1:{port}"):
            serve_in_thread(FastAPI(), "127.0.0.1", port)


class BodyMeter:
    """Wraps the app as the server runs it and counts the body bytes the app read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.read = app, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


class FakeService:
    def __init__(self, url: str, meter: BodyMeter, triager: FakeTriager) -> None:
        self.url, self.meter, self.triager = url, meter, triager


LIMIT = 100_000


@pytest.fixture
def fake_service(taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    monkeypatch.setenv("JIRA_HOOK", JIRA_SECRET)
    monkeypatch.setenv("DUMMY", "x")
    jira = JiraSettings(
        base_url="http://unused",
        email="e",
        api_token=Secret(env="DUMMY"),
        project="IT",
        webhook_secret=Secret(env="JIRA_HOOK"),
    )
    triager = FakeTriager(taxonomy)
    store = SqliteJobStore(tmp_path / "jobs.db")
    metrics = ServiceMetrics(store.counts, triager.model_info())
    webhooks = {("jira", 0): WebhookEndpoint(jira, "jira:IT", lambda: None)}
    meter = BodyMeter(create_app(triager, store, metrics, [TOKEN], webhooks, max_body_bytes=LIMIT))
    try:
        with serve(meter) as url:
            yield FakeService(url, meter, triager)
    finally:
        store.close()


class Upload:
    """A 60 MB body, streamed in 64 KiB chunks, that counts how much of it the client got to send."""

    def __init__(self, size: int = 60 * 2**20) -> None:
        self.size, self.sent = size, 0

    def __iter__(self) -> Iterator[bytes]:
        block = b"x" * 65536
        while self.sent < self.size:
            self.sent += len(block)
            yield block


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_unauthenticated_60_mb_post_is_refused_unread(fake_service: FakeService, declared: bool) -> None:
    upload = Upload()
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(upload.size)
    answer = httpx.post(f"{fake_service.url}/v1/triage", content=iter(upload), headers=headers, timeout=60)
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"detail": "a valid `Authorization: Bearer <token>` is required"}
    assert fake_service.meter.read == 0  # the app read nothing; the client stopped at its socket buffers
    assert upload.sent < upload.size // 2
    assert httpx.get(f"{fake_service.url}/healthz").json()["status"] == "ok"
    assert fake_service.triager.texts == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_a_valid_token(fake_service: FakeService, declared: bool) -> None:
    upload = Upload()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    length = {"Content-Length": str(upload.size)} if declared else {}
    url = f"{fake_service.url}/v1/triage"
    answer = httpx.post(url, content=iter(upload), headers={**headers, **length}, timeout=60)
    assert answer.status_code == 413 and answer.json() == {"detail": f"the request body is over {LIMIT} bytes"}
    # A chunked body is read up to the limit, in the pieces the server hands over (its read buffer).
    assert fake_service.meter.read <= (0 if declared else LIMIT + 2**20)
    assert upload.sent < upload.size // 2
    over = httpx.post(f"{fake_service.url}/v1/triage", json={"text": "x" * LIMIT}, headers=headers)
    assert over.status_code == 413
    within = httpx.post(f"{fake_service.url}/v1/triage", json={"text": "x" * (LIMIT - 100)}, headers=headers)
    assert within.status_code == 200 and fake_service.triager.texts == ["x" * (LIMIT - 100)]
    hook = httpx.post(f"{fake_service.url}/webhooks/jira/0", content=b"{" + b" " * LIMIT + b"}")
    assert hook.status_code == 413  # webhooks too, before their signature is computed


def test_a_validation_error_never_echoes_the_request(fake_service: FakeService) -> None:
    secret = "SECRET-INPUT-" * 1000
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{fake_service.url}/v1/triage"
    answers = [
        httpx.post(url, json={"text": [secret]}, headers=auth),
        httpx.post(url, json={"text": "fine", "id": {"nested": secret}}, headers=auth),
        httpx.post(url, json={"text": "fine", secret: secret}, headers=auth),
        httpx.post(url, content=f'{{"text": "{secret}'.encode(), headers={**auth, "Content-Type": "application/json"}),
        httpx.post(url, json={"text": "\t \u3000 \x00" + " " * 5000}, headers=auth),
        httpx.post(url, json={"text": secret, "id": True}, headers=auth),
    ]
    for answer in answers:
        assert answer.status_code == 422
        assert "SECRET-INPUT-SECRET-INPUT" not in answer.text and len(answer.content) < 1000
        body = ValidationErrorBody.model_validate(answer.json())
        assert body.detail and all(set(error) == {"loc", "msg", "type"} for error in answer.json()["detail"])
    not_text = httpx.post(url, content=b'{"text": "\xff\xfe"}', headers={**auth, "Content-Type": "application/json"})
    assert not_text.status_code == 400 and not_text.json() == {"detail": "There was an error parsing the body"}
    assert fake_service.triager.texts == []


def test_the_openapi_document_says_what_each_route_answers(fake_service: FakeService) -> None:
    document = httpx.get(f"{fake_service.url}/openapi.json").json()
    paths = document["paths"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    served = httpx.get(f"{fake_service.url}/metrics").headers["content-type"]
    assert served.split(";")[0] == "text/plain"
    triage = paths["/v1/triage"]["post"]
    assert {"200", "400", "401", "413", "422"} <= set(triage["responses"])
    assert triage["security"] == [{"HTTPBearer": []}]
    assert "WWW-Authenticate" in triage["responses"]["401"]["headers"]
    webhook = paths["/webhooks/{kind}/{index}"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "422"} <= set(webhook)
    for route in (triage["responses"], webhook):
        assert route["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ValidationErrorBody")
        assert route["413"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for operation in (paths["/healthz"]["get"], triage):
        assert list(operation["responses"]["200"]["content"]) == ["application/json"]
    errors = [
        (path, status, answer)
        for path, item in paths.items()
        for op in item.values()
        for status, answer in op["responses"].items()
        if status >= "400"
    ]
    assert errors and all(list(answer["content"]) == ["application/json"] for _, _, answer in errors), errors
    text = document["components"]["schemas"]["TriageRequest"]["properties"]["text"]
    assert text["pattern"] == TEXT_PATTERN
    unknown = httpx.post(f"{fake_service.url}/webhooks/nothing/3", json={})
    assert unknown.status_code == 404 and set(unknown.json()) == {"detail"}


def test_the_text_pattern_refuses_exactly_what_the_runtime_refuses() -> None:
    """Every code point alone: the schema's pattern matches it iff the runtime keeps a non-empty text."""
    pattern = re.compile(TEXT_PATTERN)
    for code_point in range(0x110000):
        char = chr(code_point)
        try:
            clean_ticket_text(char, 10)
            kept = True
        except TicketError:
            kept = False
        assert bool(pattern.search(char)) == kept, hex(code_point)


def test_an_unexpected_failure_is_a_json_500_as_documented(taxonomy: Taxonomy, tmp_path: Path) -> None:
    class LockedStore(SqliteJobStore):
        def counts(self) -> dict[str, int]:
            raise sqlite3.OperationalError("database is locked")

    triager = FakeTriager(taxonomy)
    store = LockedStore(tmp_path / "jobs.db")
    try:
        with serve(create_app(triager, store, ServiceMetrics(store.counts, triager.model_info()), [TOKEN], {})) as url:
            answer = httpx.get(f"{url}/metrics")
            documented = httpx.get(f"{url}/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]
            health = httpx.get(f"{url}/healthz")  # a health check reports the failure instead
    finally:
        store.close()
    assert answer.status_code == 500 and answer.json() == {"detail": "internal error; it has been logged"}
    assert documented["500"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert health.status_code == 503 and health.json()["reasons"] == [
        "the job store cannot be read: OperationalError: database is locked"
    ]


def test_a_job_store_outage_is_a_503_with_retry_after(
    taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DownStore(SqliteJobStore):
        def enqueue(self, source: str, external_id: str, payload: dict[str, Any]) -> bool:
            raise StoreUnavailable("the job store at db:5432 is unavailable: connection refused")

        def counts(self) -> dict[str, int]:
            raise StoreUnavailable("the job store at db:5432 is unavailable: connection refused")

    monkeypatch.setenv("JIRA_HOOK", JIRA_SECRET)
    monkeypatch.setenv("DUMMY", "x")
    jira = JiraSettings(
        base_url="http://unused",
        email="e",
        api_token=Secret(env="DUMMY"),
        project="IT",
        webhook_secret=Secret(env="JIRA_HOOK"),
    )
    triager = FakeTriager(taxonomy)
    store = DownStore(tmp_path / "jobs.db")
    webhooks = {("jira", 0): WebhookEndpoint(jira, "jira:IT", lambda: None)}
    try:
        with serve(
            create_app(triager, store, ServiceMetrics(store.counts, triager.model_info()), [TOKEN], webhooks)
        ) as url:
            hook = jira_call(url, {"webhookEvent": "jira:issue_created", "issue": {"key": "IT-9"}})
            metrics = httpx.get(f"{url}/metrics")
            paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    finally:
        store.close()
    for answer in (hook, metrics):
        assert answer.status_code == 503 and answer.headers["retry-after"] == "10"
        assert answer.json() == {"detail": "the job store is unavailable; retry later"}
    for operation in (paths["/webhooks/{kind}/{index}"]["post"], paths["/metrics"]["get"]):
        assert "Retry-After" in operation["responses"]["503"]["headers"]
