"""The Jira Data Center / Server connector and its worker against a local fake Jira Data Center
(tests/fakes/jira_dc.py), over real HTTP; and its place in the worker config and webhooks."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.faults import Fault
from tests.fakes.jira_dc import FakeJiraDc
from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from tests.itsm_helpers import TICKETS, check_fault_outcome, drain, make_worker, retry_now
from tests.jira_checks import (
    FIELDS,
    check_a_second_pass_writes_nothing,
    check_every_issue_written_once,
    check_polls_page_and_keep_the_cursor,
)
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira_dc import JiraDcConnector, JiraDcSettings
from ticketsmith.connectors.registry import connector_for
from ticketsmith.connectors.webhooks import WebhookEndpoint, WebhookRejected
from ticketsmith.connectors.wiki_markup import text_to_wiki, wiki_to_text
from ticketsmith.connectors.worker_config import load_worker_config
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.triager import Triager

SOURCE = "jira_dc:IT"


@pytest.fixture
def fake() -> Iterator[tuple[FakeJiraDc, str]]:
    jira = FakeJiraDc()
    with serve(jira.app()) as url:
        yield jira, url
    assert jira.spec_errors == []  # every request had the Data Center shape


def settings(url: str, monkeypatch: pytest.MonkeyPatch, token: str = "pat-secret", **extra: object) -> JiraDcSettings:
    monkeypatch.setenv("JIRA_DC_PAT", token)
    values: dict[str, object] = {
        "base_url": url,
        "personal_access_token": Secret(env="JIRA_DC_PAT"),
        "project": "IT",
        "page_size": 2,
        "timeout_s": 2.0,
        "review_writes": "all",  # the untrained test model reviews every ticket: write its guesses anyway
        "fields": FIELDS,
        **extra,
    }
    return JiraDcSettings.model_validate(values)


def notes_of(jira: FakeJiraDc, key: str) -> list[str]:
    return [wiki_to_text(comment["body"]) for comment in jira.comments[key]]


def test_wiki_markup_reads_back_what_was_written() -> None:
    note = "triage: VPN *down* for_all {team} [x|y] a-b #1 !img! ~s^ +i+ ??c?? C:\\n\n[ticketsmith:jira_dc:IT:IT-1]"
    assert wiki_to_text(text_to_wiki(note)) == note
    assert "\\[ticketsmith:jira\\_dc" in text_to_wiki(note)  # escaped: no link, no italics in Jira's rendering
    description = "h1. Outage\n{code:java}\nping vpn\n{code}\nbq. since 8am\n\\[not a link\\]"
    assert wiki_to_text(description) == "Outage\n\nping vpn\n\nsince 8am\n[not a link]"


def test_poll_pages_by_start_at_and_keeps_its_cursor(
    fake: tuple[FakeJiraDc, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    jira, url = fake
    connector = JiraDcConnector(settings(url, monkeypatch))
    check_polls_page_and_keep_the_cursor(jira, connector)
    jira.max_results = 1  # the server's cap wins over our page size: paging follows what it returned
    assert connector.poll(None) == ([f"IT-{n}" for n in range(1, 7)], "IT-6")
    connector.close()


def test_an_issue_deleted_mid_listing_makes_no_ticket_skipped(
    fake: tuple[FakeJiraDc, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleting IT-1 between pages shifts the offsets: page two starts at IT-4, and IT-3 is never
    listed. The cursor then stays at the end of page one, so the next poll lists IT-3."""
    jira, url = fake
    for summary, text in TICKETS:
        jira.add_issue(summary, text)

    def delete_first_issue(start: int) -> None:
        if start == 2:
            jira.issues.pop("IT-1", None)

    jira.before_page = delete_first_issue
    connector = JiraDcConnector(settings(url, monkeypatch))
    keys, cursor = connector.poll(None)
    assert "IT-3" not in keys and cursor == "IT-2"
    assert connector.poll(cursor) == (["IT-3", "IT-4", "IT-5"], "IT-5")
    connector.close()


def test_worker_triages_writes_back_once_and_routes_review(
    fake: tuple[FakeJiraDc, str], monkeypatch: pytest.MonkeyPatch, triager: Triager, tmp_path: Path
) -> None:
    """End to end through the real model: poll, triage, one field edit and one wiki-markup note each."""
    jira, url = fake
    for summary, text in TICKETS:
        jira.add_issue(summary, text)
    connector = JiraDcConnector(settings(url, monkeypatch))
    worker, store = make_worker(triager, connector, tmp_path)
    drain(worker)
    assert store.get_cursor(SOURCE) == "IT-5"
    check_every_issue_written_once(jira, store, SOURCE, lambda key: notes_of(jira, key))  # the fake refuses ADF
    assert connector.fetch("IT-1").text == "\n".join(TICKETS[0])
    check_a_second_pass_writes_nothing(jira, connector, triager)
    connector.close()


def test_a_humans_later_edit_is_never_overwritten_and_jsm_notes_are_internal(
    fake: tuple[FakeJiraDc, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager
) -> None:
    jira, url = fake
    key = jira.add_issue(*TICKETS[1], customfield_10050={"value": "Chosen by a human"})
    connector = JiraDcConnector(settings(url, monkeypatch, internal_note="jsm"))
    ticket = connector.fetch(key)
    result = fake_triager.triage(ticket.text)
    for _ in range(2):
        written = connector.write_back(ticket, result, f"[m:{key}]")
    assert jira.issues[key]["fields"]["customfield_10050"] == {"value": "Chosen by a human"}
    assert f"jira_dc:{key}:kept-human-value:customfield_10050" in written
    assert [c["public"] for c in jira.jsm_comments[key]] == [False] and jira.comments[key] == []
    assert f"[m:{key}]" in wiki_to_text(jira.jsm_comments[key][0]["body"])
    connector.close()


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault("PUT", r"/rest/api/2/issue/IT-1", 429, {"Retry-After": "120"}), "failed"),
        (Fault("PUT", r"/rest/api/2/issue/IT-1", 503, {"Retry-After": "7"}), "failed"),
        (Fault("GET", r"/rest/api/2/issue/IT-1", 500), "failed"),
        (Fault("POST", r"/rest/api/2/issue/IT-1/comment", 409), "failed"),
        (Fault("GET", r"/rest/api/2/issue/IT-1", malformed=True), "failed"),
        (Fault("GET", r"/rest/api/2/issue/IT-1", delay_s=3.0), "failed"),
        (Fault("GET", r"/rest/api/2/issue/IT-1", 404), "dead"),
        (
            Fault(
                "PUT",
                r"/rest/api/2/issue/IT-1",
                400,
                body={"errorMessages": [], "errors": {"customfield_10050": "Option value 'Network' is not valid"}},
            ),
            "dead",
        ),
    ],
)
def test_faults_retry_or_dead_letter_and_lose_nothing(
    fake: tuple[FakeJiraDc, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_triager: FakeTriager,
    tmp_path: Path,
    fault: Fault,
    state: str,
) -> None:
    jira, url = fake
    key = jira.add_issue(*TICKETS[2])
    connector = JiraDcConnector(settings(url, monkeypatch))
    worker, store = make_worker(fake_triager, connector, tmp_path)
    check_fault_outcome(jira, worker, store, key, fault, state, lambda: len(jira.comments[key]))
    if state == "dead":
        job = store.get(SOURCE, key)
        assert job is not None and jira.comments[key] == []  # nothing half-written beside the error
    connector.close()


def test_a_rejected_token_keeps_the_ticket(
    fake: tuple[FakeJiraDc, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager, tmp_path: Path
) -> None:
    jira, url = fake
    key = jira.add_issue(*TICKETS[3])
    connector = JiraDcConnector(settings(url, monkeypatch, token="revoked-pat"))
    with pytest.raises(ConnectorError) as raised:
        connector.fetch(key)
    assert raised.value.status == 401 and raised.value.transient and "revoked-pat" not in str(raised.value)
    worker, store = make_worker(fake_triager, connector, tmp_path)
    assert worker.poll_once() == 0 and store.get_cursor(SOURCE) is None  # nothing enqueued, cursor kept
    store.enqueue(SOURCE, key, {"key": key})  # as a webhook would
    worker.work_once()
    job = store.get(SOURCE, key)
    assert job is not None and job.state == "failed"  # kept for a retry, not dead
    monkeypatch.setenv("JIRA_DC_PAT", jira.token)  # the operator fixes the token
    retry_now(worker, store)
    job = store.get(SOURCE, key)
    assert job is not None and job.state in ("done", "needs_review") and len(jira.comments[key]) == 1
    connector.close()


def test_webhooks_are_read_by_the_jira_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIRA_DC_HOOK", "hook-secret")
    source = settings("http://unused", monkeypatch, webhook_secret=Secret(env="JIRA_DC_HOOK"))
    polls: list[str] = []
    endpoint = WebhookEndpoint(source, SOURCE, lambda: polls.append("poll"))
    raw = json.dumps({"webhookEvent": "jira:issue_created", "issue": {"id": "10007", "key": "IT-7"}}).encode()
    signature = "sha256=" + hmac.new(b"hook-secret", raw, hashlib.sha256).hexdigest()
    assert endpoint.keys({"x-hub-signature": signature}, {}, raw) == ["IT-7"] and polls == []
    with pytest.raises(WebhookRejected) as forged:
        endpoint.keys({"x-hub-signature": "sha256=0"}, {}, raw)
    assert forged.value.status == 401


def test_the_worker_config_takes_jira_data_center_sources(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    source = (
        "  - base_url: https://jira.example.local/jira\n"
        "    personal_access_token: {file: /etc/ticketsmith/jira-pat}\n"
        "    project: OPS\n"
        "    internal_note: jsm\n"
    )
    config.write_text(f"state_dir: state\njira_data_center:\n{source}", encoding="utf-8")
    loaded = load_worker_config(config)
    [dc] = loaded.sources_of(JiraDcSettings)
    assert [(s.kind, s.position) for s in loaded.itsm_sources()] == [("jira_dc", 0)]
    connector = connector_for(dc)
    assert isinstance(connector, JiraDcConnector) and connector.source == "jira_dc:OPS"
    connector.close()
    config.write_text(f"state_dir: state\njira_data_center:\n{source}    email: bot@example.com\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"jira_data_center\[0\]\.email"):  # a Cloud key in a DC source
        load_worker_config(config)
