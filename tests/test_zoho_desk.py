"""The Zoho Desk connector and its worker against local fakes of Zoho accounts and Zoho Desk, over real HTTP."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.faults import Fault
from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from tests.fakes.zoho import FakeZohoDesk
from tests.itsm_helpers import TICKETS, check_fault_outcome, drain, make_worker
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import FieldTarget, Secret
from ticketsmith.connectors.zoho_desk import ZohoDeskConnector, ZohoDeskSettings
from ticketsmith.connectors.zoho_oauth import ZohoOAuthSettings
from ticketsmith.runtime.triager import Triager

TEAM = "1892000000069071"


@pytest.fixture
def fake() -> Iterator[tuple[FakeZohoDesk, str]]:
    desk = FakeZohoDesk()
    with serve(desk.app()) as url:
        yield desk, url


def settings(
    url: str, monkeypatch: pytest.MonkeyPatch, refresh: str = "1000.refresh", **extra: object
) -> ZohoDeskSettings:
    monkeypatch.setenv("ZOHO_SECRET", "client-secret")
    monkeypatch.setenv("ZOHO_REFRESH", refresh)
    oauth = ZohoOAuthSettings(
        accounts_url=url,
        client_id="1000.CLIENT",
        client_secret=Secret(env="ZOHO_SECRET"),
        refresh_token=Secret(env="ZOHO_REFRESH"),
    )
    values: dict[str, object] = {
        "base_url": f"{url}/api/v1",
        "org_id": "2389290",
        "oauth": oauth,
        "page_size": 2,
        "timeout_s": 2.0,
        "review_writes": "all",  # the untrained test model reviews every ticket: write its guesses anyway
        "fields": {
            "category": FieldTarget(field="category"),
            "subcategory": FieldTarget(field="subCategory"),
            "urgency": FieldTarget(field="priority", values={"Critical": "High"}),
            "application": FieldTarget(field="cf.cf_application"),
        },
        "review_route": {"teamId": TEAM},
        **extra,
    }
    return ZohoDeskSettings.model_validate(values)


def add_tickets(desk: FakeZohoDesk, count: int = 5) -> list[str]:
    return [desk.add_ticket(*TICKETS[i % len(TICKETS)], created=f"2099-01-01T08:00:{i:02d}.000Z") for i in range(count)]


def test_poll_walks_newest_first_down_to_the_cursor(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, url = fake
    ids = add_tickets(desk)
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    keys, cursor = connector.poll(None)
    assert keys == ids and cursor == "2099-01-01T08:00:04.000Z"  # three pages of two, oldest first
    again, same = connector.poll(cursor)
    assert again == [ids[-1]] and same == cursor  # the cursor's own instant comes again; the job store dedups
    newer = desk.add_ticket("Another", "text", created="2099-01-01T09:00:00.000Z")
    assert connector.poll(cursor) == ([ids[-1], newer], "2099-01-01T09:00:00.000Z")
    connector.close()


def test_empty_desk_answers_204_and_polling_copes(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = fake
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    assert connector.poll(None) == ([], None)
    connector.close()


def test_worker_triages_writes_back_once_and_routes_review(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch, triager: Triager, tmp_path: Path
) -> None:
    desk, url = fake
    add_tickets(desk)
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    worker, store = make_worker(triager, connector, tmp_path)
    drain(worker)
    source = connector.source
    for ticket_id, ticket in desk.tickets.items():
        job = store.get(source, ticket_id)
        assert job is not None and job.state in ("done", "needs_review")
        result = job.result or {}
        assert ticket["category"] == result["category"] and ticket["subCategory"] == result["subcategory"]
        assert ticket["priority"] == ("High" if result["urgency"] == "Critical" else result["urgency"])
        assert ticket["cf"]["cf_application"] == result["application"]
        assert (ticket["teamId"] == TEAM) == (job.state == "needs_review")
        notes = desk.comments[ticket_id]
        assert len(notes) == 1 and notes[0]["isPublic"] is False and notes[0]["contentType"] == "plainText"
        assert f"[ticketsmith:{source}:{ticket_id}]" in notes[0]["content"] and result["summary"] in notes[0]["content"]
    # a second pass (as after a crash between write-back and completion) writes nothing new
    first = next(iter(desk.tickets))
    edits = len(desk.edits)
    remote = connector.fetch(first)
    written = connector.write_back(remote, triager.triage(remote.text), f"[ticketsmith:{source}:{first}]")
    assert len(desk.edits) == edits and len(desk.comments[first]) == 1
    assert written and all("kept-human-value" in w for w in written)
    connector.close()


def test_a_humans_value_is_kept(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager
) -> None:
    desk, url = fake
    ticket_id = desk.add_ticket(*TICKETS[0], created="2099-01-01T08:00:00.000Z", category="Chosen by a human")
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    ticket = connector.fetch(ticket_id)
    written = connector.write_back(ticket, fake_triager.triage(ticket.text), "[m]")
    assert desk.tickets[ticket_id]["category"] == "Chosen by a human"
    assert f"zoho_desk:{ticket_id}:kept-human-value:category" in written
    assert "category" not in desk.edits[0][1]
    connector.close()


def test_an_expired_token_is_refreshed_and_the_call_retried(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, url = fake
    ticket_id = add_tickets(desk, 1)[0]
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    assert connector.fetch(ticket_id).text.startswith(TICKETS[0][0])
    desk.accounts.expire_all()
    assert connector.fetch(ticket_id).key == ticket_id
    assert len(desk.accounts.issued) == 2
    assert desk.calls.count(("GET", f"/api/v1/tickets/{ticket_id}")) == 3  # ok, 401, retried ok
    connector.close()


def test_a_refused_refresh_token_keeps_the_ticket(
    fake: tuple[FakeZohoDesk, str], monkeypatch: pytest.MonkeyPatch, fake_triager: FakeTriager, tmp_path: Path
) -> None:
    desk, url = fake
    add_tickets(desk, 1)
    connector = ZohoDeskConnector(settings(url, monkeypatch, refresh="1000.revoked"))
    with pytest.raises(ConnectorError) as raised:
        connector.poll(None)
    assert raised.value.transient and "1000.revoked" not in str(raised.value)
    worker, store = make_worker(fake_triager, connector, tmp_path)
    assert worker.poll_once() == 0 and store.get_cursor(connector.source) is None
    connector.close()


@pytest.mark.parametrize(
    ("fault", "state"),
    [
        (Fault("PATCH", r"/api/v1/tickets/\d+", 429), "failed"),  # credits or concurrency cap: no Retry-After
        (Fault("GET", r"/api/v1/tickets/\d+", 500), "failed"),
        (Fault("PATCH", r"/api/v1/tickets/\d+", 409), "failed"),
        (Fault("POST", r"/api/v1/tickets/\d+/comments", 503, {"Retry-After": "30"}), "failed"),
        (Fault("GET", r"/api/v1/tickets/\d+", malformed=True), "failed"),
        (Fault("GET", r"/api/v1/tickets/\d+/comments", delay_s=3.0), "failed"),
        (Fault("GET", r"/api/v1/tickets/\d+", 404), "dead"),
        (Fault("PATCH", r"/api/v1/tickets/\d+", 422), "dead"),
    ],
)
def test_faults_retry_or_dead_letter_and_lose_nothing(
    fake: tuple[FakeZohoDesk, str],
    monkeypatch: pytest.MonkeyPatch,
    fake_triager: FakeTriager,
    tmp_path: Path,
    fault: Fault,
    state: str,
) -> None:
    desk, url = fake
    ticket_id = add_tickets(desk, 1)[0]
    connector = ZohoDeskConnector(settings(url, monkeypatch))
    worker, store = make_worker(fake_triager, connector, tmp_path)
    check_fault_outcome(desk, worker, store, ticket_id, fault, state, lambda: len(desk.comments[ticket_id]))
    connector.close()
