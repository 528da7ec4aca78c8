"""Outage-proof retries: the circuit breaker, the worker's retry rules, and two soak runs against the fake
Jira Cloud (a 10-minute 503 outage, credentials revoked for an hour) fast-forwarded through one manual
clock shared by the job store, the breaker and the worker, so they take seconds, not hours.

The triager is the stand-in (tests/fakes/triager.py): these tests are about the ITSM side, not labels.
`pytest -s tests/test_retries.py -k soak` prints the figures bench/NOTES.md records."""

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, cast

import pytest

from tests.fakes.faults import Fault
from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from tests.jira_checks import FIELDS
from ticketsmith.connectors.circuit_breaker import BreakerSettings, CircuitBreaker
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.itsm_worker import ItsmWorker, failure_kind
from ticketsmith.connectors.jira import JiraConnector, JiraSettings
from ticketsmith.connectors.job_store import RetryPolicy, SqliteJobStore
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager

SOURCE = "jira:IT"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LabelledFakeTriager(FakeTriager):
    def model_label(self) -> str:
        return "fake.gguf"


class Board:
    """The paused sources, as /healthz and /metrics read them (connectors/health.py's SourcePauses)."""

    def __init__(self) -> None:
        self._paused: dict[str, str] = {}

    def pause(self, source: str, reason: str) -> None:
        self._paused[source] = reason

    def resume(self, source: str) -> None:
        self._paused.pop(source, None)

    def paused(self) -> dict[str, str]:
        return dict(self._paused)


class TrainedModel:
    loaded = True
    trained_fields = ("category",)


# --- the breaker ---------------------------------------------------------------------------------


def test_the_breaker_opens_after_n_failures_probes_with_capped_backoff_and_closes_on_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, board = ManualClock(), Board()
    breaker = CircuitBreaker(SOURCE, BreakerSettings(failures=3, first_pause_s=10, max_pause_s=40), board, clock)
    caplog.set_level(logging.WARNING, logger="ticketsmith.connectors.circuit_breaker")
    for _ in range(2):
        breaker.failed("HTTP 503")
        assert breaker.allows() and board.paused() == {}
    breaker.failed("HTTP 503")
    assert not breaker.allows() and SOURCE in board.paused() and "3 failures in a row" in board.paused()[SOURCE]
    pauses = []
    for _ in range(5):  # every probe fails: 10, 20, 40, 40, 40 s
        waited = 0
        while not breaker.allows():
            clock.advance(1)
            waited += 1
        assert breaker.probing
        pauses.append(waited)
        breaker.failed("HTTP 503")
    assert pauses == [10, 20, 40, 40, 40]
    clock.advance(40)
    assert breaker.allows() and breaker.probing
    breaker.succeeded()
    assert breaker.state == "closed" and board.paused() == {}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and "paused" in messages[0] and "resuming" in messages[1]  # once each way
    breaker.failed("HTTP 503")  # a success cleared the streak: one failure does not open it again
    assert breaker.allows()


def test_rejected_credentials_open_the_breaker_at_once() -> None:
    clock, board = ManualClock(), Board()
    breaker = CircuitBreaker(SOURCE, BreakerSettings(failures=5), board, clock)
    breaker.failed("jira: GET /rest/api/3/issue/IT-1 answered 401", "credentials")
    assert not breaker.allows() and "credentials rejected" in board.paused()[SOURCE]
    assert breaker.seconds_left() == pytest.approx(5.0)


def test_failure_kinds_by_status() -> None:
    assert failure_kind(ConnectorError("x", transient=True, status=401)) == "paused"
    assert failure_kind(ConnectorError("x", transient=True, status=403)) == "paused"
    assert failure_kind(ConnectorError("x", transient=True, status=503)) == "transient"
    assert failure_kind(ConnectorError("timed out", transient=True)) == "transient"
    assert failure_kind(ConnectorError("x", transient=False, status=404)) == "permanent"
    assert failure_kind(ConnectorError("x", transient=False, status=400)) == "permanent"


def test_a_paused_source_shows_in_healthz_and_metrics(tmp_path: Path) -> None:
    health = pytest.importorskip("ticketsmith.connectors.health")  # /healthz's states (the operations work)
    store = SqliteJobStore(tmp_path / "jobs.db")
    board = health.SourcePauses()
    breaker = CircuitBreaker(SOURCE, BreakerSettings(failures=1), board, ManualClock())
    metrics = ServiceMetrics(store.counts, {"model": "fake.gguf"}, [SOURCE, "zoho_desk:1"], board.paused)
    assert health.check_health(TrainedModel(), store, board).status == "ok"
    breaker.failed("HTTP 503")
    report = health.check_health(TrainedModel(), store, board)
    assert report.status == "degraded" and report.http_status == 200
    assert any(SOURCE in reason for reason in report.reasons)
    text = metrics.render().decode()
    assert 'ticketsmith_source_paused{source="jira:IT"} 1.0' in text
    assert 'ticketsmith_source_paused{source="zoho_desk:1"} 0.0' in text
    store.close()


# --- the worker against the fake Jira --------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[tuple[FakeJira, str]]:
    jira = FakeJira()
    with serve(jira.app()) as url:
        yield jira, url


class Rig(NamedTuple):
    jira: FakeJira
    worker: ItsmWorker
    store: SqliteJobStore
    clock: ManualClock
    board: Board


@pytest.fixture
def rig(fake: tuple[FakeJira, str], taxonomy: Taxonomy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    """A worker as `ticketsmith worker` builds it, with defaults (24 h budget, 5-minute caps), on a manual clock."""
    jira, url = fake
    monkeypatch.setenv("JIRA_TEST_TOKEN", jira.token)
    settings = JiraSettings.model_validate(
        {
            "base_url": url,
            "email": "bot@example.com",
            "api_token": Secret(env="JIRA_TEST_TOKEN"),
            "project": "IT",
            "timeout_s": 2.0,
            "fields": FIELDS,
        }
    )
    clock, board = ManualClock(), Board()
    store = SqliteJobStore(tmp_path / "jobs.db", RetryPolicy(), clock=clock, rng=random.Random(7))
    connector = JiraConnector(settings)
    breaker = CircuitBreaker(connector.source, BreakerSettings(), board, clock)
    triager = cast(Triager, LabelledFakeTriager(taxonomy))  # the worker needs only triage() and model_label()
    worker = ItsmWorker(triager, store, connector, "w", 60, 30, breaker, clock)
    return Rig(jira, worker, store, clock, board)


def test_rejected_credentials_pause_the_source_and_keep_every_attempt(rig: Rig) -> None:
    jira, worker, store, clock, board = rig
    jira.add_issue("VPN down", "since this morning")
    worker.poll_once()
    jira.token = "revoked"
    stop = threading.Event()
    for _ in range(3_600):  # an hour without credentials
        worker.tick(stop)
        clock.advance(1)
    job = store.get(SOURCE, "IT-1")
    assert job is not None and job.state == "failed" and job.attempts == 0 and job.failing_since is None
    assert SOURCE in board.paused()
    probes = sum(1 for method, path in jira.calls if method == "GET" and path == "/rest/api/3/issue/IT-1")
    assert probes <= 20  # backoff to 5 minutes, not one call per second
    jira.token = "secret-token"
    for _ in range(301):
        worker.tick(stop)
        clock.advance(1)
    done = store.get(SOURCE, "IT-1")
    assert done is not None and done.state == "done" and board.paused() == {}
    assert len(jira.comments["IT-1"]) == 1


def test_a_permanent_failure_still_dead_letters_at_once(rig: Rig) -> None:
    jira, worker, store, _, board = rig
    jira.add_issue("Gone soon", "text")
    worker.poll_once()
    jira.faults.append(Fault("GET", r"/rest/api/3/issue/IT-1", 404))
    assert worker.work_once()
    job = store.get(SOURCE, "IT-1")
    assert job is not None and job.state == "dead" and board.paused() == {}


class SoakFigures(NamedTuple):
    tickets: int
    dead: int
    edits_per_ticket: Counter[int]
    notes_per_ticket: Counter[int]
    simulated_s: float
    wall_s: float
    outage_calls: int  # requests the fake got while it was down: the breaker's probes, and what came before
    tickets_in_hand: int  # tickets whose job met the outage (a failure recorded), not just its polls


def _soak(rig: Rig, outage_s: float, break_it: Callable[[], None], mend: Callable[[], None]) -> SoakFigures:
    """200 tickets arrive, one every 3 simulated seconds; after the first minute the outage starts
    (`break_it`) and lasts `outage_s`, then `mend`. Half the tickets that arrive meanwhile are also
    announced by webhook (enqueued at once, so the worker meets the outage with tickets in hand). The
    run ends when every ticket is finished or two simulated hours after the outage."""
    jira, worker, store, clock, _ = rig
    stop = threading.Event()
    started, wall = clock(), time.monotonic()
    outage = (started + 60, started + 60 + outage_s)
    arrivals = [started + 3 * i for i in range(200)]
    broken = False
    calls_at = [0, 0]
    while clock() < outage[1] + 7_200:
        while arrivals and arrivals[0] <= clock():
            arrivals.pop(0)
            key = jira.add_issue(f"Ticket {len(jira.issues) + 1}", "The VPN drops every few minutes.")
            if broken and len(jira.issues) % 2 == 0:
                store.enqueue(SOURCE, key, {"key": key})  # what the webhook endpoint does
        if not broken and outage[0] <= clock() < outage[1]:
            break_it()
            broken, calls_at[0] = True, len(jira.calls)
        elif broken and clock() >= outage[1]:
            mend()
            broken, calls_at[1] = False, len(jira.calls)
        worker.tick(stop)
        counts = store.counts()
        if not arrivals and clock() > outage[1] and counts.get("done", 0) + counts.get("dead", 0) == 200:
            break
        clock.advance(1)
    counts = store.counts()
    edits = Counter(key for key, _ in jira.edits)
    return SoakFigures(
        tickets=len(jira.issues),
        dead=counts.get("dead", 0),
        edits_per_ticket=Counter(edits[key] for key in jira.issues),
        notes_per_ticket=Counter(len(jira.comments[key]) for key in jira.issues),
        simulated_s=clock() - started,
        wall_s=time.monotonic() - wall,
        outage_calls=calls_at[1] - calls_at[0],
        tickets_in_hand=sum(1 for job in store.list_jobs(limit=200) if job.failures or job.last_error),
    )


def _check(figures: SoakFigures, store: SqliteJobStore, caplog: pytest.LogCaptureFixture, name: str) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "ticketsmith.connectors.circuit_breaker"]
    print(
        f"\n{name}: {figures.tickets} tickets, {figures.dead} dead, field updates per ticket"
        f" {dict(figures.edits_per_ticket)}, notes per ticket {dict(figures.notes_per_ticket)},"
        f" {figures.simulated_s:.0f} s simulated in {figures.wall_s:.1f} s wall; {figures.tickets_in_hand} tickets"
        f" failed in hand, {figures.outage_calls} requests during the outage; breaker log lines: {lines}"
    )
    assert figures.tickets == 200 and figures.dead == 0
    assert store.counts() == {"done": 200}
    assert figures.edits_per_ticket == Counter({1: 200}) and figures.notes_per_ticket == Counter({1: 200})
    # once when it opens, once when it closes
    assert len(lines) == 2 and "paused" in lines[0] and "resuming" in lines[1]


def test_soak_a_ten_minute_503_outage_kills_no_ticket(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    outage = [Fault(method, r"/rest/.*", 503, times=10**9) for method in ("GET", "POST", "PUT")]

    def break_it() -> None:
        rig.jira.faults.extend(outage)

    def mend() -> None:
        rig.jira.faults.clear()

    figures = _soak(rig, 600, break_it, mend)
    _check(figures, rig.store, caplog, "503 for 10 minutes")
    assert any(job.failures > 0 for job in rig.store.list_jobs(limit=200))  # tickets in hand met the outage


def test_soak_credentials_revoked_for_an_hour_kill_no_ticket(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    def break_it() -> None:
        rig.jira.token = "revoked"

    def mend() -> None:
        rig.jira.token = "secret-token"

    figures = _soak(rig, 3_600, break_it, mend)
    _check(figures, rig.store, caplog, "credentials revoked for an hour")
    assert all(job.attempts <= 1 and job.failing_since is None for job in rig.store.list_jobs(limit=200))


def test_the_worker_yaml_sets_the_retry_budget_and_the_breaker(tmp_path: Path) -> None:
    from ticketsmith.connectors.worker_config import load_worker_config

    config = tmp_path / "worker.yaml"
    config.write_text(
        "state_dir: state\n"
        "retry: {transient_budget_s: 7200, max_delay_s: 120}\n"
        "breaker: {failures: 3, max_pause_s: 60}\n",
        encoding="utf-8",
    )
    loaded = load_worker_config(config)
    assert loaded.retry.transient_budget_s == 7200 and loaded.retry.max_delay_s == 120
    assert loaded.retry.max_attempts == 5 and loaded.breaker.failures == 3 and loaded.breaker.max_pause_s == 60
    config.write_text("state_dir: state\nretry: {transient_budget: 7200}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean `transient_budget_s`"):
        load_worker_config(config)
