"""A schemathesis run against the running app's own /openapi.json, with and without a bearer token.

Every answer must be documented (status code, content type, body schema, headers), every request the
schema allows must be accepted and every one it forbids refused. The triager is a fake
(tests/fakes/triager.py): this is about the HTTP contract, not labels; tests/test_http_api.py covers
the same routes on the real model. The CLI runs as an operator would run it (its pytest plugin does not
support this pytest); examples are bounded so that both runs take seconds. A failure prints the run,
with the seed that reproduces it."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from ticketsmith.connectors.http_app import create_app
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira import JiraSettings
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.connectors.servicedesk_plus import ServiceDeskPlusSettings
from ticketsmith.connectors.webhooks import WebhookEndpoint
from ticketsmith.runtime.taxonomy import Taxonomy

TOKEN = "fuzz-api-token"
MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def api_url(taxonomy: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    secret_file = folder / "webhook-secret"
    secret_file.write_text("a-webhook-secret", encoding="utf-8")
    secret = Secret(file=secret_file)
    jira = JiraSettings(base_url="http://unused", email="e", api_token=secret, project="IT", webhook_secret=secret)
    sdp = ServiceDeskPlusSettings(base_url="http://unused", auth_token=secret, webhook_secret=secret)
    webhooks = {
        ("jira", 0): WebhookEndpoint(jira, "jira:IT", lambda: None),
        ("servicedesk_plus", 0): WebhookEndpoint(sdp, "servicedesk_plus:x", lambda: None),
    }
    triager = FakeTriager(taxonomy)
    store = SqliteJobStore(folder / "jobs.db")
    metrics = ServiceMetrics(store.counts, triager.model_info())
    try:
        with serve(create_app(triager, store, metrics, [TOKEN], webhooks)) as url:
            yield url
    finally:
        store.close()


@pytest.mark.parametrize("token", [None, TOKEN], ids=["without-token", "with-token"])
def test_schemathesis_finds_nothing(api_url: str, token: str | None, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{api_url}/openapi.json"]
    command += ["--max-examples", str(MAX_EXAMPLES), "--request-timeout", "10"]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"Operations: +(\d+) selected / \1 total", run.stdout)  # every route was tested
