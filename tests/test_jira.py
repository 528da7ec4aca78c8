"""The Jira connector and its worker against a local fake Jira Cloud (tests/fakes/jira.py), over real HTTP."""

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import openapi_spec
from tests.fakes.faults import Fault
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from tests.itsm_helpers import TICKETS, drain, make_worker, retry_now
from tests.jira_checks import (
    FIELDS,
    check_a_second_pass_writes_nothing,
    check_every_issue_written_once,
    check_polls_page_and_keep_the_cursor,
)
from ticketsmith.connectors.adf import adf_to_text
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.jira import JiraConnector, JiraSettings
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    jira = FakeJira()
    with serve(jira.app()) as url:
        yield jira, url
    assert jira.spec_errors == []  # every request and answer matched Atlassian's spec


def settings(url: str, monkeypatch: pytest.MonkeyPatch, token: str = "secret-token", **extra: object) -> JiraSettings:
    monkeypatch.setenv("JIRA_TEST_TOKEN", token)
    values: dict[str, object] = {
        "base_url": url,
        "email": "bot@example.com",
        "api_token": Secret(env="JIRA_TEST_TOKEN"),
        "project": "IT",
        "page_size": 2,
        "timeout_s": 2.0,
        "review_writes": "all",  # the untrained test model reviews every ticket: write its guesses anyway
        "fields": FIELDS,
        **extra,
    }
    return JiraSettings.model_validate(values)


def test_spec_is_available_for_the_fake() -> None:
    if not openapi_spec.available():
        pytest.skip("../shared/specs/jira is not here: requests are not checked against the spec")
    assert openapi_spec.request_errors("editIssue", {"fields": {}, "update": {"labels": [{"add": "x"}]}}) == []
    assert openapi_spec.request_errors("searchAndReconsileIssuesUsingJqlPost", {"jql": 1}) != []


def test_poll_pages_through_new_tickets_and_keeps_its_cursor(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    jira, url = fake
    connector = JiraConnector(settings(url, monkeypatch))
    check_polls_page_and_keep_the_cursor(jira, connector)
    connector.close()


def test_worker_triages_writes_back_once_and_routes_review(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch, triager: Triager, tmp_path: Path
) -> None:
    jira, url = fake
    for summary, text in TICKETS:
        jira.add_issue(summary, text)
    connector = JiraConnector(settings(url, monkeypatch))
    worker, store = make_worker(triager, connector, tmp_path)
    drain(worker)
    assert store.get_cursor("jira:IT") == "IT-5"
    check_every_issue_written_once(
        jira, store, "jira:IT", lambda key: [adf_to_text(c["body"]) for c in jira.comments[key]]
    )
    check_a_second_pass_writes_nothing(jira, connector, triager)
    connector.close()


def test_a_ticket_for_review_gets_its_confident_fields_only(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    """The default `review_writes: confident`: a field under its threshold is left for the human,
    and the note lists every guess with its confidence."""
    jira, url = fake
    key = jira.add_issue(*TICKETS[0])
    connector = JiraConnector(settings(url, monkeypatch, review_writes="confident"))
    worker, store = make_worker(FakeTriager(taxonomy, unsure=["category"]), connector, tmp_path)
    drain(worker)
    job = store.get("jira:IT", key)
    assert job is not None and job.result is not None and job.state == "needs_review"  # as an untrained model
    fields, unsure = jira.issues[key]["fields"], set(job.result["review_fields"])
    assert "category" in unsure and fields.get("customfield_10050") is None
    expected_group = None if "assignment_group" in unsure else job.result["assignment_group"]
    assert fields.get("customfield_10060") == expected_group and "ticketsmith-review" in fields["labels"]
    note = adf_to_text(jira.comments[key][0]["body"])
    assert f"category: {job.result['category']} (" in note and "unsure: for a human to decide" in note
    connector.close()


def test_a_humans_later_edit_is_never_overwritten(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager
) -> None:
    jira, url = fake
    key = jira.add_issue(*TICKETS[0], customfield_10050={"value": "Chosen by a human"})
    connector = JiraConnector(settings(url, monkeypatch))
    ticket = connector.fetch(key)
    written = connector.write_back(ticket, fake_triager.triage(ticket.text), f"[m:{key}]")
    assert jira.issues[key]["fields"]["customfield_10050"] == {"value": "Chosen by a human"}
    assert f"jira:{key}:kept-human-value:customfield_10050" in written
    connector.close()


def test_jsm_internal_note(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager
) -> None:
    jira, url = fake
    key = jira.add_issue(*TICKETS[1])
    connector = JiraConnector(settings(url, monkeypatch, internal_note="jsm"))
    ticket = connector.fetch(key)
    for _ in range(2):
        connector.write_back(ticket, fake_triager.triage(ticket.text), f"[m:{key}]")
    assert len(jira.jsm_comments[key]) == 1 and jira.jsm_comments[key][0]["public"] is False
    assert jira.comments[key] == []
    connector.close()


@pytest.mark.parametrize(
    ("fault", "state", "transient"),
    [
        (Fault("PUT", r"/rest/api/3/issue/IT-1", 429, {"Retry-After": "120"}), "failed", True),
        (Fault("PUT", r"/rest/api/3/issue/IT-1", 503, {"Retry-After": "7"}), "failed", True),
        (Fault("GET", r"/rest/api/3/issue/IT-1", 500), "failed", True),
        (Fault("POST", r"/rest/api/3/issue/IT-1/comment", 409), "failed", True),
        (Fault("GET", r"/rest/api/3/issue/IT-1", malformed=True), "failed", True),
        (Fault("GET", r"/rest/api/3/issue/IT-1", delay_s=3.0), "failed", True),
        (Fault("GET", r"/rest/api/3/issue/IT-1", 404), "dead", False),
    ],
)
def test_faults_retry_or_dead_letter_and_lose_nothing(
    fake: tuple[FakeJira, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_triager: FakeTriager,
    tmp_path: Path,
    fault: Fault,
    state: str,
    transient: bool,
) -> None:
    jira, url = fake
    jira.add_issue(*TICKETS[2])
    connector = JiraConnector(settings(url, monkeypatch))
    worker, store = make_worker(fake_triager, connector, tmp_path)
    jira.faults.append(fault)
    started = time.time()
    drain(worker)
    job = store.get("jira:IT", "IT-1")
    assert job is not None and job.state == state, job
    if fault.headers.get("Retry-After"):
        assert job.next_attempt_at >= started + float(fault.headers["Retry-After"])
    if transient:  # the fault is gone: the retry completes the ticket, with exactly one note
        retry_now(worker, store)
        job = store.get("jira:IT", "IT-1")
        assert job is not None and job.state in ("done", "needs_review")
        assert len(jira.comments["IT-1"]) == 1
    connector.close()


def test_rejected_credentials_keep_the_ticket(
    fake: tuple[FakeJira, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager, tmp_path: Path
) -> None:
    jira, url = fake
    jira.add_issue(*TICKETS[3])
    connector = JiraConnector(settings(url, monkeypatch, token="wrong"))
    with pytest.raises(ConnectorError) as raised:
        connector.fetch("IT-1")
    assert raised.value.status == 401 and raised.value.transient
    assert "wrong" not in str(raised.value)
    worker, store = make_worker(fake_triager, connector, tmp_path)
    assert worker.poll_once() == 0  # polling failed; nothing lost, nothing enqueued, cursor unchanged
    assert store.get_cursor("jira:IT") is None
    connector.close()


def test_the_deploy_example_config_is_valid() -> None:
    from ticketsmith.connectors.jira_dc import JiraDcSettings
    from ticketsmith.connectors.servicedesk_plus import ServiceDeskPlusSettings
    from ticketsmith.connectors.worker_config import load_worker_config
    from ticketsmith.connectors.zoho_desk import ZohoDeskSettings

    config = load_worker_config(Path(__file__).resolve().parent.parent / "deploy" / "worker.example.yaml")
    [jira] = config.sources_of(JiraSettings)
    assert config.inbox is not None and jira.fields["urgency"].encode("Critical") == {"name": "Highest"}
    assert "JIRA_API_TOKEN" in repr(jira.api_token)
    assert "jira-pat" in repr(config.sources_of(JiraDcSettings)[0].personal_access_token)
    assert config.sources_of(ZohoDeskSettings)[0].fields["application"].field == "cf.cf_application"
    assert config.sources_of(ServiceDeskPlusSettings)[0].review_route == {"group": {"name": "Human Triage"}}
    assert config.http is not None and [kind for kind, _, _ in config.itsm_sources()] == [
        "jira",
        "jira_dc",
        "zoho_desk",
        "servicedesk_plus",
    ]


@pytest.mark.model  # `ticketsmith worker` processes load the real model
def test_sigkilled_worker_writes_every_ticket_back_exactly_once(fake: tuple[FakeJira, str], tmp_path: Path) -> None:
    """The service as deployed (`ticketsmith worker --config`), killed with SIGKILL at random moments and
    restarted, against the fake Jira: every ticket gets exactly one field update and exactly one note."""
    jira, url = fake
    for i in range(16):
        summary, text = TICKETS[i % len(TICKETS)]
        jira.add_issue(f"{summary} #{i}", text)
    config = tmp_path / "worker.yaml"
    config.write_text(
        "state_dir: state\n"
        "lease_s: 4\n"  # a killed worker's ticket comes back after 4 s
        "poll_interval_s: 0.5\n"
        "runtime: {n_threads: 2}\n"
        "jira:\n"
        f"  - base_url: {url}\n"
        "    email: bot@example.com\n"
        "    api_token: {env: JIRA_TEST_TOKEN}\n"
        "    project: IT\n"
        "    page_size: 5\n"
        "    review_writes: all\n"  # the untrained model reviews every ticket: write its guesses anyway
        "    fields: {category: {field: customfield_10050, shape: value}, urgency: {field: priority, shape: name}}\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "ticketsmith", "worker", "--config", str(config)]
    env = {**os.environ, "JIRA_TEST_TOKEN": jira.token}
    rng = random.Random(11)
    for _ in range(4):
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(6, 12))
        process.send_signal(signal.SIGKILL)
        process.wait()
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and any(len(c) == 0 for c in jira.comments.values()):
        time.sleep(1)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    notes = {key: len(comments) for key, comments in jira.comments.items()}
    assert set(notes.values()) == {1}, notes
    edits = [key for key, _ in jira.edits]
    assert sorted(edits) == sorted(jira.issues), "each ticket's fields are written once"
    assert all("customfield_10050" in issue["fields"] for issue in jira.issues.values())
    store = SqliteJobStore(tmp_path / "state" / "jobs.db")
    assert sum(store.counts().get(s, 0) for s in ("done", "needs_review")) == len(jira.issues)
