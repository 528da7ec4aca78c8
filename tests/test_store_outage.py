"""A job-store outage is logged once when it starts and once when it ends, with capped backoff between."""

import logging

import pytest

from ticketsmith.connectors.job_store import StoreUnavailable
from ticketsmith.connectors.store_outage import StoreOutage


def test_one_line_per_outage_and_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = StoreOutage(first_s=1.0, cap_s=5.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="ticketsmith.connectors.store_outage")
    outage.recovered()  # no outage, nothing to say
    waits = []
    for _ in range(6):
        waits.append(outage.failed(StoreUnavailable("the job store at postgresql://db/q is unavailable")))
        now[0] += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0] and outage.down
    outage.recovered()
    outage.recovered()
    assert not outage.down
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("the job store at postgresql://db/q is unavailable; pausing")
    assert messages[1] == "the job store is back after 22 s; resuming"
    assert outage.failed(StoreUnavailable("down again")) == 1.0  # a new outage starts from the first pause
