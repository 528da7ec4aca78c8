"""The worker service: every configured source in one loop, until SIGTERM.

Each source's `tick` finds new tickets and works its ready jobs; between ticks the loop sleeps until
a watched folder changes or the idle interval passes. `stop` is checked between jobs, so the ticket
in hand is always finished (its lease would return it to the queue anyway)."""

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ticketsmith.connectors.job_store import StoreUnavailable
from ticketsmith.connectors.store_outage import StoreOutage
from ticketsmith.runtime.triager import Triager


class Source(Protocol):
    def tick(self, stop: threading.Event) -> None: ...


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.event.set()


def run_service(
    triager: Triager, sources: Sequence[Source], stop: threading.Event, watch: Sequence[Path] = (), idle_s: float = 1.0
) -> None:
    triager.warm_up()  # before any claim: the first ticket must not outlive its lease
    wake = threading.Event()
    observer = Observer()
    for folder in watch:
        observer.schedule(_Wake(wake), str(folder), recursive=False)
    observer.start()
    outage = StoreOutage()
    try:
        while not stop.is_set():
            try:
                for source in sources:
                    source.tick(stop)
            except StoreUnavailable as exc:  # the database went away: pause, never crash
                stop.wait(outage.failed(exc))
                continue
            outage.recovered()
            wake.wait(idle_s)
            wake.clear()
    finally:
        observer.stop()
        observer.join()
