"""The inbox folder: file reading, hostile files, and a worker killed with SIGKILL again and again.

The in-process worker tests are about files and jobs, not labels: they run on the fake triager. The
`ticketsmith worker` processes are the end-to-end tests through the real model."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.triager import FakeTriager
from ticketsmith.connectors.inbox import InboxFolders, read_inbox_file
from ticketsmith.connectors.inbox_worker import InboxWorker
from ticketsmith.connectors.job_store import AuditRecord, SqliteJobStore
from ticketsmith.connectors.triage_port import TicketTriager
from ticketsmith.runtime.errors import TicketError

EML = b"Subject: Outlook crash\r\nContent-Type: text/html\r\n\r\n<p>Outlook <b>crashes</b> on start</p>\r\n"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.txt", b"Printer jams", "Printer jams"),
        ("b.json", b'{"id": 1, "text": "VPN down\\u0000"}', "VPN down\x00"),
        ("c.eml", EML, "Outlook crash\nOutlook crashes on start"),
        ("d.txt", "Grüße, Drucker kaputt".encode("cp1252"), "Grüße, Drucker kaputt"),
    ],
)
def test_supported_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert read_inbox_file(path, 10_000).text.strip() == expected


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.pdf", b"%PDF", "unsupported file type"),
        ("b.txt", bytes(range(256)) * 4, "looks binary"),
        ("c.json", b'{"title": "x"}', 'string "text" field'),
        ("d.json", b"{not json", "not valid JSON"),
        ("e.txt", b"  \n\t ", "no ticket text"),
    ],
)
def test_files_that_cannot_be_tickets(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TicketError, match=message):
        read_inbox_file(path, 10_000)


def test_symlinks_are_not_followed_and_huge_files_are_cut(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (tmp_path / "link.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(TicketError, match="symbolic links"):
        read_inbox_file(tmp_path / "link.txt", 10_000)
    (tmp_path / "big.txt").write_text("disk full " * 100_000)
    big = read_inbox_file(tmp_path / "big.txt", 10_000)
    assert big.cut and len(big.text) == 10_000


def make_worker(triager: TicketTriager, root: Path, settle_s: float = 0.0) -> tuple[InboxWorker, SqliteJobStore]:
    store = SqliteJobStore(root / "state" / "jobs.db")
    return InboxWorker(triager, store, InboxFolders(root), "test-worker", settle_s=settle_s), store


def run_until_idle(worker: InboxWorker) -> None:
    worker.scan()
    while worker.work_once():
        pass


def test_worker_handles_hostile_names_duplicates_and_bad_files(fake_triager: FakeTriager, tmp_path: Path) -> None:
    worker, store = make_worker(fake_triager, tmp_path)
    inbox = worker.folders.inbox
    (inbox / "weird name\nwith newline ü.txt").write_text("Teams has no sound")
    (inbox / "..dots.txt").write_text("hidden-looking names are skipped")
    (inbox / "ticket.txt").write_text("Laptop battery swollen")
    (worker.folders.processed / "ticket.txt").write_text("an older file with the same name")
    (inbox / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 50)
    (inbox / "upload.txt.part").write_text("still being written")
    run_until_idle(worker)
    results = sorted(p.name for p in worker.folders.outbox.iterdir())
    assert len(results) == 2 and all(name.endswith(".json") and "/" not in name for name in results)
    assert (worker.folders.processed / "ticket.txt").read_text() == "an older file with the same name"
    assert (worker.folders.processed / "ticket.1.txt").read_text() == "Laptop battery swollen"
    assert "looks binary" in (worker.folders.failed / "image.txt.error.txt").read_text()
    assert sorted(p.name for p in inbox.iterdir()) == ["..dots.txt", "upload.txt.part"]
    assert sum(store.counts().get(s, 0) for s in ("done", "needs_review")) == 2


def test_half_written_files_wait_for_the_settle_time(fake_triager: FakeTriager, tmp_path: Path) -> None:
    worker, store = make_worker(fake_triager, tmp_path, settle_s=0.5)
    (worker.folders.inbox / "new.txt").write_text("Wi-Fi drops")
    worker.scan()
    assert store.counts() == {}
    time.sleep(0.6)
    run_until_idle(worker)
    assert list(worker.folders.processed.iterdir()) == [worker.folders.processed / "new.txt"]


def test_a_finished_job_whose_original_was_not_moved_is_not_triaged_again(
    fake_triager: FakeTriager, tmp_path: Path
) -> None:
    worker, store = make_worker(fake_triager, tmp_path)
    original = worker.folders.inbox / "crash.txt"
    original.write_text("Outlook crashes")
    worker.scan()
    job = store.claim("test-worker", 60)
    assert job is not None
    result = fake_triager.triage("Outlook crashes")
    audit = AuditRecord(input_hash="h", model="m", output={})
    store.complete(job.id, "test-worker", "done", result.model_dump(mode="json"), audit)  # crash before the move
    run_until_idle(worker)
    assert not original.exists() and (worker.folders.processed / "crash.txt").exists()
    assert store.counts() == {"done": 1}
    assert list(worker.folders.outbox.iterdir()) == []  # no second result


def inbox_worker_command(root: Path, lease_s: int) -> list[str]:
    options = ["--inbox", str(root), "--settle", "0", "--lease", str(lease_s), "--threads", "2"]
    return [sys.executable, "-m", "ticketsmith", "worker", *options]


@pytest.mark.model  # `ticketsmith worker` processes load the real model
def test_sigterm_while_the_model_loads_is_a_clean_stop(tmp_path: Path) -> None:
    """systemd may stop the service while it starts: exit 0, and the ticket stays for the next start."""
    folders = InboxFolders(tmp_path)
    (folders.inbox / "ticket.txt").write_text("The VPN drops every ten minutes")
    process = subprocess.Popen(inbox_worker_command(tmp_path, lease_s=30), stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("loading the model"):
            break
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped; jobs by state" in rest
    assert [p.name for p in (*folders.inbox.iterdir(), *folders.processed.iterdir())] == ["ticket.txt"]


@pytest.mark.model  # `ticketsmith worker` processes load the real model
def test_sigkill_at_random_moments_loses_nothing_and_writes_nothing_twice(tmp_path: Path) -> None:
    folders = InboxFolders(tmp_path)
    names = [f"ticket-{i:02d}.txt" for i in range(10)]
    for i, name in enumerate(names):
        (folders.inbox / name).write_text(f"Ticket {i}: the printer on floor {i} is jammed again")
    command = inbox_worker_command(tmp_path, lease_s=4)  # a killed worker's ticket comes back after 4 s
    rng = random.Random(7)
    for _ in range(4):
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(6, 12))  # model load, then somewhere in the middle of the tickets
        process.send_signal(signal.SIGKILL)
        process.wait()
    final = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert final.stderr is not None
    for line in final.stderr:  # the earlier workers may have done every ticket: stop only once serving
        if line.startswith("serving"):
            break
    deadline = time.time() + 240
    while any(folders.inbox.iterdir()) and time.time() < deadline:
        time.sleep(1)
    final.send_signal(signal.SIGTERM)
    assert final.wait(timeout=60) == 0  # a clean stop on SIGTERM
    assert sorted(p.name for p in folders.processed.iterdir()) == names
    results = sorted(p.name for p in folders.outbox.iterdir())
    assert len(results) == len(names) and not any(name.startswith(".") for name in results)
    store = SqliteJobStore(tmp_path / "state" / "jobs.db")
    assert sum(store.counts().get(s, 0) for s in ("done", "needs_review")) == len(names)
    with sqlite3.connect(tmp_path / "state" / "jobs.db") as db:
        audits_per_job = dict(db.execute("SELECT job_id, COUNT(*) FROM audit GROUP BY job_id").fetchall())
    assert len(audits_per_job) == len(names) and set(audits_per_job.values()) == {1}
    assert os.listdir(folders.failed) == []
