"""The service's HTTP side (FastAPI), served by the worker process next to its sources.

- `POST /v1/triage` `{"text": ..., "id": ...}` with `Authorization: Bearer <token>`: one TriageResult
  (422 for an empty text, 401 without a valid token);
- `POST /webhooks/<kind>/<n>`: the n-th configured source of that kind (jira, zoho_desk,
  servicedesk_plus); verified, then the announced tickets become jobs (connectors/webhooks.py);
- `GET /healthz`: the model and the job counts; `GET /metrics`: Prometheus text format."""

import hmac
import threading
import time
from collections.abc import Callable, Mapping

import uvicorn
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.connectors.itsm_worker import ItsmWorker
from ticketsmith.connectors.job_store import JobStore, SqliteJobStore
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.connectors.webhooks import WebhookEndpoint, WebhookRejected
from ticketsmith.connectors.worker_config import WorkerConfig
from ticketsmith.runtime.errors import ConfigError, DecodingError, TicketError
from ticketsmith.runtime.triager import Triager


class TriageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000)
    id: str | int | None = None


def create_app(
    triager: Triager,
    store: JobStore,
    metrics: ServiceMetrics,
    api_tokens: list[str],
    webhooks: Mapping[tuple[str, int], WebhookEndpoint],
) -> FastAPI:
    """`store` must be this thread's own connection to the job store (SQLite connections are not shared)."""
    app = FastAPI(title="ticketsmith", docs_url=None, redoc_url=None)
    store_lock = threading.Lock()

    def authorised(authorization: str | None) -> bool:
        given = (authorization or "").removeprefix("Bearer ").encode()
        return any(hmac.compare_digest(token.encode(), given) for token in api_tokens)

    @app.post("/v1/triage")
    def triage(body: TriageRequest, authorization: str | None = Header(None)) -> JSONResponse:
        """One TriageResult (already validated against the taxonomy by the runtime)."""
        if not authorised(authorization):
            raise HTTPException(401, "a valid `Authorization: Bearer <token>` is required")
        try:
            return JSONResponse(triager.triage(body.text, body.id).model_dump(mode="json"))
        except TicketError as exc:
            raise HTTPException(422, str(exc)) from None
        except DecodingError as exc:
            raise HTTPException(500, str(exc)) from None

    @app.post("/webhooks/{kind}/{index}")
    async def webhook(kind: str, index: int, request: Request) -> JSONResponse:
        endpoint = webhooks.get((kind, index))
        if endpoint is None:
            return JSONResponse({"detail": f"no webhook source {kind}/{index}"}, status_code=404)
        raw = await request.body()
        try:
            keys = endpoint.keys(request.headers, request.query_params, raw)
        except WebhookRejected as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        with store_lock:
            added = [key for key in keys if store.enqueue(endpoint.source, key, {"key": key})]
        return JSONResponse({"received": keys, "enqueued": added})

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        with store_lock:
            counts = store.counts()
        return {"status": "ok", "model": triager.model_path.name, "jobs": counts}

    @app.get("/metrics")
    def prometheus() -> Response:
        with store_lock:
            body = metrics.render()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def serve_in_thread(app: FastAPI, host: str, port: int, start_timeout_s: float = 10.0) -> Callable[[], None]:
    """Start uvicorn in a daemon thread and wait until it listens (no access log: webhook URLs may carry
    a secret); returns `stop`. A port that cannot be bound is a ConfigError, not a silent dead thread."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
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
    config: WorkerConfig, triager: Triager, itsm_workers: Mapping[tuple[str, int], ItsmWorker]
) -> Callable[[], None]:
    """The HTTP side of a worker process, with its own connection to the job store; returns `stop`."""
    assert config.http is not None
    store = SqliteJobStore(config.state_dir / "jobs.db")
    metrics = ServiceMetrics(store.counts, triager.model_info())
    triager.observers.append(metrics.observe)
    webhooks = {
        where: WebhookEndpoint(worker.connector.settings, worker.connector.source, worker.poll_soon)
        for where, worker in itsm_workers.items()
    }
    app = create_app(triager, store, metrics, [secret.get() for secret in config.http.api_tokens], webhooks)
    stop_server = serve_in_thread(app, config.http.host, config.http.port)

    def stop() -> None:
        stop_server()
        store.close()

    return stop
