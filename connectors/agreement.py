"""How often the model's shadow-mode guesses match the labels humans set later, read back from the system.

A source in `mode: shadow` writes nothing back, so whatever a mapped field holds afterwards was set by
someone else: comparing it with the guess stored in the job measures the model on live tickets before
it is let loose on them. Live-mode jobs are skipped (their fields hold what we wrote), and a ticket
that cannot be read (deleted, an outage) is counted, never fatal. Values are compared in the system's
terms (our guess encoded as the write-back would encode it), so a `values` map that sends two labels
to one system value is not held against the model; for display, a value is decoded back into our label."""

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field, computed_field

from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import FieldTarget, ItsmConnector, get_path
from ticketsmith.connectors.job_store import FinalState, Job, JobStore
from ticketsmith.runtime.errors import TicketsmithError
from ticketsmith.runtime.taxonomy import LABEL_FIELDS

FINISHED: tuple[FinalState, ...] = ("done", "needs_review")


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


class Tally(BaseModel):
    """Tickets whose field a human has set, and on how many of them the guess was the same."""

    labelled: int = 0
    agreed: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def agreement(self) -> float | None:
        """agreed / labelled, or None when nothing is labelled yet."""
        return _share(self.agreed, self.labelled)

    def add(self, agreed: bool) -> None:
        self.labelled += 1
        self.agreed += agreed


class Mismatch(BaseModel):
    """One ticket where the human chose otherwise: what to look at when the agreement is low."""

    ticket: str
    guessed: str
    human: str = Field(description="the system's value, decoded into our label where it maps back to one")
    needs_review: bool


class FieldAgreement(BaseModel):
    """One mapped field of one source."""

    field: str = Field(description="ours: category, urgency, ... (the summary is free text, never compared)")
    system_field: str
    read: int = Field(0, description="tickets read back whose job guessed this field")
    not_labelled: int = Field(0, description="of those, tickets where nobody has set the field yet")
    overall: Tally = Field(default_factory=Tally)
    auto_accepted: Tally = Field(default_factory=Tally, description="tickets the model would have closed alone")
    needs_review: Tally = Field(default_factory=Tally, description="tickets it would have sent to a human")
    mismatches: list[Mismatch] = Field(default_factory=list)


class SourceAgreement(BaseModel):
    """One ITSM source of the worker's config."""

    source: str
    jobs: int = Field(0, description="finished jobs considered (done or needs_review)")
    live: int = Field(0, description="skipped: triaged in live mode, so their fields hold what we wrote")
    shadow: int = 0
    auto_accepted: int = Field(0, description="shadow jobs that ended done rather than needs_review")
    read: int = Field(0, description="shadow jobs whose ticket was read back")
    unreadable: int = Field(0, description="shadow jobs whose ticket could not be read (deleted, an outage)")
    unreadable_tickets: list[str] = Field(default_factory=list)
    first_error: str | None = None
    fields: list[FieldAgreement] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def auto_accepted_share(self) -> float | None:
        """The share of shadow jobs that would have been written without review."""
        return _share(self.auto_accepted, self.shadow)


class AgreementReport(BaseModel):
    sources: list[SourceAgreement]
    other_jobs: int = Field(0, description="finished jobs of sources that are not an ITSM source of this config")


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def system_values(target: FieldTarget, raw: Any) -> list[str]:
    """The field's value(s) as plain strings, unwrapped from its shape (`{"value"|"name"|"id": x}`, which
    a system answers with more members, such as `id` and `self`); empty when nobody has set it."""
    if raw is None:
        return []
    if isinstance(raw, list):
        return [value for item in raw for value in system_values(target, item)]
    if isinstance(raw, dict):
        keys = [target.shape] if target.shape != "string" else []
        member = next((raw[k] for k in (*keys, "value", "name") if raw.get(k) not in (None, "")), None)
        return system_values(target, member) if not isinstance(member, dict | list) else []
    text = str(raw).strip()
    return [text] if text else []


def decode(target: FieldTarget, value: str) -> str:
    """Our label for one system value: the inverse of `FieldTarget.encode`'s translation; an
    untranslated value is its own label."""
    return next((ours for ours, theirs in target.values.items() if _same(theirs, value)), value)


def agrees(target: FieldTarget, guess: str, current: Sequence[str]) -> bool:
    """Whether the system holds what the write-back would have written for `guess`."""
    encoded = system_values(target, target.encode(guess))
    return any(_same(ours, theirs) for ours in encoded for theirs in current)


def finished_jobs(store: JobStore, source: str | None, since_s: float | None, limit: int) -> list[Job]:
    """The `limit` most recently finished jobs (of one source, or all), finished `since_s` ago at most."""
    jobs = [job for state in FINISHED for job in store.list_jobs(state, source, limit)]
    if since_s is not None:
        cutoff = store.now() - since_s
        jobs = [job for job in jobs if job.updated_at >= cutoff]
    jobs.sort(key=lambda job: (job.updated_at, job.id), reverse=True)
    return jobs[:limit]


def _ran_in_shadow(store: JobStore, job: Job) -> bool:
    records = store.audit_records(job.id)
    return bool(records) and records[-1].mode == "shadow"


def _compare(
    fields: dict[str, FieldAgreement], targets: dict[str, FieldTarget], job: Job, current: dict[str, Any]
) -> None:
    """Add one read-back ticket to each field's tallies."""
    result = job.result or {}
    review = job.state == "needs_review"
    for name, target in targets.items():
        guess = result.get(name)
        if guess is None:  # the taxonomy does not define this field: nothing was guessed
            continue
        tally = fields[name]
        tally.read += 1
        values = system_values(target, get_path(current, target.field))
        if not values:
            tally.not_labelled += 1
            continue
        agreed = agrees(target, str(guess), values)
        tally.overall.add(agreed)
        (tally.needs_review if review else tally.auto_accepted).add(agreed)
        if not agreed:
            human = ", ".join(decode(target, value) for value in values)
            tally.mismatches.append(
                Mismatch(ticket=job.external_id, guessed=str(guess), human=human, needs_review=review)
            )


def source_agreement(store: JobStore, connector: ItsmConnector, jobs: Iterable[Job]) -> SourceAgreement:
    """Read back every shadow job's ticket of this source and compare each mapped label field."""
    report = SourceAgreement(source=connector.source)
    targets: dict[str, FieldTarget] = {
        name: target for name, target in connector.settings.fields.items() if name in LABEL_FIELDS
    }
    fields = {name: FieldAgreement(field=name, system_field=target.field) for name, target in targets.items()}
    for job in jobs:
        report.jobs += 1
        if not _ran_in_shadow(store, job):
            report.live += 1
            continue
        report.shadow += 1
        report.auto_accepted += job.state == "done"
        try:
            ticket = connector.fetch(str(job.payload.get("key", job.external_id)))
        except (ConnectorError, TicketsmithError) as exc:
            report.unreadable += 1
            report.unreadable_tickets.append(job.external_id)
            report.first_error = report.first_error or str(exc)
            continue
        report.read += 1
        _compare(fields, targets, job, ticket.current)
    report.fields = list(fields.values())
    return report


def measure_agreement(
    store: JobStore,
    connectors: Sequence[ItsmConnector],
    since_s: float | None = None,
    limit: int = 500,
    source: str | None = None,
) -> AgreementReport:
    """The agreement report of the most recent finished jobs, source by source in the config's order."""
    jobs = finished_jobs(store, source, since_s, limit)
    known = {connector.source for connector in connectors}
    sources = [
        source_agreement(store, connector, [job for job in jobs if job.source == connector.source])
        for connector in connectors
        if source is None or connector.source == source
    ]
    return AgreementReport(sources=sources, other_jobs=sum(job.source not in known for job in jobs))
