"""The service's HTTP side (FastAPI), served by the worker process next to its sources.

- `POST /v1/triage` `{"text": ..., "id": ...}` with `Authorization: Bearer <token>`: one TriageResult
  (422 for a text without a visible character, 401 without a valid token);
- `POST /webhooks/<kind>/<n>`: the n-th configured source of that kind (jira, zoho_desk,
  servicedesk_plus); verified, then the announced tickets become jobs (connectors/webhooks.py);
- `GET /healthz`: ok, degraded (200, with reasons) or unavailable (503) (connectors/health.py), the model
  and the job counts; `GET /metrics`: Prometheus text format.

The token and the body limit are checked before any parsing (connectors/http_guard.py); error bodies
never echo the request (connectors/http_errors.py); /openapi.json documents every answer a route
gives, with its real body and content type (connectors/http_contract.py)."""

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer

from ticketsmith.connectors.health import SourcePauses, check_health
from ticketsmith.connectors.http_contract import (
    DEFAULT_MAX_BODY_BYTES,
    FAILED,
    INVALID,
    UNAUTHORISED,
    UNAVAILABLE,
    ErrorBody,
    Health,
    TriageRequest,
    WebhookAccepted,
    too_large,
)
from ticketsmith.connectors.http_errors import install_error_handlers, invalid
from ticketsmith.connectors.http_guard import BearerTokens, RequestGuard
from ticketsmith.connectors.itsm_worker import ItsmWorker
from ticketsmith.connectors.job_store import JobStore
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.connectors.store_config import open_store
from ticketsmith.connectors.triage_port import TicketTriager
from ticketsmith.connectors.webhooks import WebhookEndpoint, WebhookRejected
from ticketsmith.connectors.worker_config import WorkerConfig
from ticketsmith.runtime.errors import ConfigError, DecodingError, TicketError
from ticketsmith.runtime.schema import TriageResult

logger = logging.getLogger(__name__)

TRIAGE_PATH = "/v1/triage"

# Webhook calls are read raw by WebhookEndpoint (signatures cover the exact bytes), so FastAPI does not
# see their body or secrets; declared here so that the document says what a call carries.
WEBHOOK_CALL: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Hub-Signature",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Jira: `sha256=<HMAC-SHA256 of the raw body>` with the source's webhook_secret",
        },
        {
            "name": "X-Ticketsmith-Secret",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Zoho Desk, ServiceDesk Plus: the source's webhook_secret (or `?secret=`)",
        },
        {
            "name": "secret",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "Zoho Desk, ServiceDesk Plus: the source's webhook_secret",
        },
    ],
    "requestBody": {
        "required": False,
        "description": "the ITSM system's event, verified on its raw bytes (Jira and Zoho Desk send JSON)",
        "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {"type": "string"}}},
    },
}


def create_app(
    triager: TicketTriager,
    store: JobStore,
    metrics: ServiceMetrics,
    api_tokens: Collection[str],
    webhooks: Mapping[tuple[str, int], WebhookEndpoint],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    pauses: SourcePauses | None = None,
) -> FastAPI:
    """`store` must be this thread's own connection to the job store (SQLite connections are not shared);
    `pauses` are the worker's paused sources, which /healthz reports."""
    # Validation-mode schemas for answers too: TriageResult's serializer (which leaves out the label fields
    # a taxonomy lacks) would otherwise document it as a bare object; the validation schema says it all.
    app = FastAPI(title="ticketsmith", docs_url=None, redoc_url=None, separate_input_output_schemas=False)
    app.add_middleware(
        RequestGuard,
        tokens=BearerTokens(api_tokens),
        protected={("POST", TRIAGE_PATH)},
        max_body_bytes=max_body_bytes,
    )
    install_error_handlers(app)
    store_lock = threading.Lock()
    oversized = too_large(max_body_bytes)

    @app.post(
        TRIAGE_PATH,
        # Only documents the scheme: RequestGuard has checked the token before the body was read.
        dependencies=[Depends(HTTPBearer(auto_error=False))],
        responses={
            200: {"model": TriageResult, "description": "the result, validated against the taxonomy"},
            400: {"model": ErrorBody, "description": "the body is not text (not UTF-8), so not JSON either"},
            **UNAUTHORISED,
            **oversized,
            **INVALID,
            500: {"model": ErrorBody, "description": "the model's answer did not validate (a bug), or another failure"},
        },
    )
    def triage(body: TriageRequest) -> JSONResponse:
        """One TriageResult (already validated against the taxonomy by the runtime)."""
        try:
            result = triager.triage(body.text, body.id)
        except TicketError as exc:  # the schema's pattern should have caught it; same shape regardless
            return invalid([{"loc": ("body", "text"), "msg": str(exc), "type": "ticket_text"}])
        except DecodingError as exc:  # its text may quote the ticket: logged here, not sent back
            logger.error("POST %s: %s", TRIAGE_PATH, exc)
            return _error(500, "the model's answer did not validate; this is a bug, please report it")
        return JSONResponse(result.model_dump(mode="json"))

    @app.post(
        "/webhooks/{kind}/{index}",
        openapi_extra=WEBHOOK_CALL,
        responses={
            200: {"model": WebhookAccepted, "description": "verified; the announced tickets are jobs"},
            400: {"model": ErrorBody, "description": "verified, but the body is not the system's event format"},
            401: {"model": ErrorBody, "description": "a missing or wrong signature or shared secret"},
            404: {"model": ErrorBody, "description": "no such source, or its webhook is off (no webhook_secret)"},
            **oversized,
            **INVALID,
            **FAILED,
            **UNAVAILABLE,
        },
    )
    async def webhook(
        kind: Annotated[str, Path(examples=["jira"])],
        index: Annotated[int, Path(ge=0, examples=[0])],
        request: Request,
    ) -> JSONResponse:
        """A call from the `index`-th configured source of `kind` (`jira`, `zoho_desk`, ...)."""
        endpoint = webhooks.get((kind, index))
        if endpoint is None:
            return _error(404, "no such webhook source")  # fixed text: errors never echo the request
        raw = await request.body()
        try:
            keys = endpoint.keys(request.headers, request.query_params, raw)
        except WebhookRejected as exc:
            return _error(exc.status, str(exc))
        with store_lock:
            added = [key for key in keys if store.enqueue(endpoint.source, key, {"key": key})]
        return JSONResponse(WebhookAccepted(received=keys, enqueued=added).model_dump())

    paused = pauses or SourcePauses()

    @app.get(
        "/healthz",
        responses={
            200: {"model": Health, "description": "ok, or degraded (with reasons): the worker works"},
            503: {
                "model": Health,
                "description": "unavailable (with reasons): the job store or the model is not usable",
            },
            **FAILED,
        },
    )
    def healthz() -> JSONResponse:
        with store_lock:
            report = check_health(triager, store, paused)
        body = Health(
            status=report.status, reasons=report.reasons, model=triager.model_info()["model"], jobs=report.jobs
        )
        return JSONResponse(body.model_dump(), status_code=report.http_status)

    @app.get(
        "/metrics",
        # A plain Response class: with PlainTextResponse, FastAPI would document the JSON errors as text/plain.
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **FAILED,
            **UNAVAILABLE,
        },
    )
    def prometheus() -> PlainTextResponse:
        with store_lock:
            body = metrics.render()
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse(ErrorBody(detail=detail).model_dump(), status_code=status)


def serve_in_thread(app: FastAPI, host: str, port: int, start_timeout_s: float = 10.0) -> Callable[[], None]:
    """Start uvicorn in a daemon thread and wait until it listens (no access log: webhook URLs may carry
    a secret); returns `stop`. A port that cannot be bound is a ConfigError, not a silent dead thread."""
    # log_config=None: uvicorn's records go to the root handler, in --log-format and with secrets masked.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ticketsmith-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ConfigError(f"cannot serve HTTP on {host}:{port}: the address is in use or not allowed")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


def start_http(
    config: WorkerConfig,
    triager: TicketTriager,
    itsm_workers: Mapping[tuple[str, int], ItsmWorker],
    pauses: SourcePauses | None = None,
) -> Callable[[], None]:
    """The HTTP side of a worker process, with its own connection to the job store; returns `stop`."""
    assert config.http is not None
    store = open_store(config.store, config.state_dir)
    sources = [worker.connector.source for worker in itsm_workers.values()]
    metrics = ServiceMetrics(store.counts, triager.model_info(), sources, (pauses or SourcePauses()).paused)
    triager.observers.append(metrics.observe)
    webhooks = {
        where: WebhookEndpoint(worker.connector.settings, worker.connector.source, worker.poll_soon)
        for where, worker in itsm_workers.items()
    }
    tokens = [secret.get() for secret in config.http.api_tokens]
    app = create_app(triager, store, metrics, tokens, webhooks, config.http.max_body_bytes, pauses)
    stop_server = serve_in_thread(app, config.http.host, config.http.port)

    def stop() -> None:
        stop_server()
        store.close()

    return stop
