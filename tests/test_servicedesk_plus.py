"""The ServiceDesk Plus connector and its worker against a local fake SDP (on-premises and Cloud), over real HTTP."""

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.fakes.servicedesk_plus import FakeServiceDeskPlus, sdp_error
from tests.fakes.triager import FakeTriager
from tests.itsm_helpers import TICKETS, check_fault_outcome, drain, make_worker
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import FieldTarget, Secret
from ticketsmith.connectors.servicedesk_plus import ServiceDeskPlusConnector, ServiceDeskPlusSettings
from ticketsmith.connectors.zoho_oauth import ZohoOAuthSettings
from ticketsmith.runtime.triager import Triager

REVIEW_GROUP = "Human Triage"
T0 = 4_070_908_800_000  # 2099-01-01 in epoch milliseconds


@pytest.fixture(params=["onprem", "cloud"])
def fake(request: pytest.FixtureRequest) -> Iterator[tuple[FakeServiceDeskPlus, str]]:
    sdp = FakeServiceDeskPlus(edition=request.param)
    with serve(sdp.app()) as url:
        yield sdp, url


def settings(
    sdp: FakeServiceDeskPlus, url: str, monkeypatch: pytest.MonkeyPatch, key: str = "6F00-TECH-KEY", **extra: object
) -> ServiceDeskPlusSettings:
    monkeypatch.setenv("SDP_KEY", key)
    monkeypatch.setenv("ZOHO_SECRET", "client-secret")
    monkeypatch.setenv("ZOHO_REFRESH", "1000.refresh")
    edition: Literal["onprem", "cloud"] = sdp.edition
    auth: dict[str, object] = (
        {"auth_token": Secret(env="SDP_KEY")}
        if edition == "onprem"
        else {
            "oauth": ZohoOAuthSettings(
                accounts_url=url,
                client_id="1000.CLIENT",
                client_secret=Secret(env="ZOHO_SECRET"),
                refresh_token=Secret(env="ZOHO_REFRESH"),
            )
        }
    )
    values: dict[str, object] = {
        "base_url": url,
        "edition": edition,
        **auth,
        "page_size": 2,
        "timeout_s": 2.0,
        "review_writes": "all",  # the untrained test model reviews every ticket: write its guesses anyway
        "fields": {
            "category": FieldTarget(field="category", shape="name"),
            "urgency": FieldTarget(field="urgency", shape="name"),
            "assignment_group": FieldTarget(field="group", shape="name"),
            "application": FieldTarget(field="udf_fields.udf_sline_301"),
        },
        "review_route": {"group": {"name": REVIEW_GROUP}},
        **extra,
    }
    return ServiceDeskPlusSettings.model_validate(values)


def add_requests(sdp: FakeServiceDeskPlus, count: int = 5) -> list[str]:
    return [sdp.add_request(*TICKETS[i % len(TICKETS)], created_ms=T0 + i) for i in range(count)]


def test_poll_pages_through_new_requests_and_keeps_its_cursor(
    fake: tuple[FakeServiceDeskPlus, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sdp, url = fake
    ids = add_requests(sdp)
    connector = ServiceDeskPlusConnector(settings(sdp, url, monkeypatch))
    keys, cursor = connector.poll(None)
    assert keys == ids and cursor == str(T0 + 4)  # three pages of two
    assert connector.poll(cursor) == ([ids[-1]], cursor)  # the cursor's own instant again; the store dedups
    newer = sdp.add_request("Another", "text", created_ms=T0 + 60_000)
    assert connector.poll(cursor) == ([ids[-1], newer], str(T0 + 60_000))
    connector.close()


def test_worker_triages_writes_back_once_and_routes_review(
    fake: tuple[FakeServiceDeskPlus, str], monkeypatch: pytest.MonkeyPatch, triager: Triager, tmp_path: Path
) -> None:
    sdp, url = fake
    add_requests(sdp)
    connector = ServiceDeskPlusConnector(settings(sdp, url, monkeypatch))
    worker, store = make_worker(triager, connector, tmp_path)
    drain(worker)
    source = connector.source
    for request_id, request in sdp.requests.items():
        job = store.get(source, request_id)
        assert job is not None and job.state in ("done", "needs_review")
        result = job.result or {}
        assert request["category"] == {"name": result["category"]} and request["urgency"] == {"name": result["urgency"]}
        assert request["udf_fields"]["udf_sline_301"] == result["application"]
        expected_group = REVIEW_GROUP if job.state == "needs_review" else result["assignment_group"]
        assert request["group"] == {"name": expected_group}
        notes = sdp.notes[request_id]
        assert len(notes) == 1 and notes[0]["show_to_requester"] is False
        assert f"[ticketsmith:{source}:{request_id}]" in notes[0]["description"]
    first = next(iter(sdp.requests))
    edits = len(sdp.edits)
    remote = connector.fetch(first)
    connector.write_back(remote, triager.triage(remote.text), f"[ticketsmith:{source}:{first}]")
    assert len(sdp.edits) == edits and len(sdp.notes[first]) == 1
    connector.close()


def test_an_unknown_lookup_value_dead_letters_with_the_reason(
    fake: tuple[FakeServiceDeskPlus, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager, tmp_path: Path
) -> None:
    """A mapping that names a category SDP does not have is a configuration error: the job is dead with
    SDP's own message, visible, instead of being retried for ever."""
    sdp, url = fake
    sdp.lookups["category"] = {"Only this one"}
    request_id = add_requests(sdp, 1)[0]
    connector = ServiceDeskPlusConnector(settings(sdp, url, monkeypatch))
    worker, store = make_worker(fake_triager, connector, tmp_path)
    drain(worker)
    job = store.get(connector.source, request_id)
    assert job is not None and job.state == "dead" and "does not exist" in (job.last_error or "")
    connector.close()


def test_wrong_credentials_keep_the_ticket(
    fake: tuple[FakeServiceDeskPlus, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sdp, url = fake
    if sdp.edition == "cloud":
        sdp.accounts.refresh_token = "1000.other"
    connector = ServiceDeskPlusConnector(settings(sdp, url, monkeypatch, key="wrong-key"))
    with pytest.raises(ConnectorError) as raised:
        connector.poll(None)
    assert raised.value.transient and "wrong-key" not in str(raised.value)
    connector.close()


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault("PUT", r"/requests/\d+", 429, {"Retry-After": "30"}), "failed"),
        (Fault("GET", r"/requests/\d+", 500), "failed"),
        (Fault("POST", r"/requests/\d+/notes", 409), "failed"),
        (Fault("GET", r"/requests/\d+", 200, body=sdp_error(4004, "Internal error")), "failed"),  # error in a 200
        (Fault("POST", r"/requests/\d+/notes", 200, body=sdp_error(4015, "API rate limit reached")), "failed"),
        (Fault("GET", r"/requests/\d+/notes", malformed=True), "failed"),
        (Fault("PUT", r"/requests/\d+", delay_s=3.0), "failed"),
        (Fault("GET", r"/requests/\d+", 404), "dead"),
    ],
)
def test_faults_retry_or_dead_letter_and_lose_nothing(
    fake: tuple[FakeServiceDeskPlus, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_triager: FakeTriager,
    tmp_path: Path,
    fault: Fault,
    state: str,
) -> None:
    sdp, url = fake
    request_id = add_requests(sdp, 1)[0]
    connector = ServiceDeskPlusConnector(settings(sdp, url, monkeypatch))
    worker, store = make_worker(fake_triager, connector, tmp_path)
    check_fault_outcome(sdp, worker, store, request_id, fault, state, lambda: len(sdp.notes[request_id]))
    connector.close()
