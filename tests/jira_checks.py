"""What the Jira Cloud and Jira Data Center tests check alike: both connectors take the same field
mapping and must leave every issue in the same state after the worker has run."""

from collections.abc import Callable

from tests.fakes.jira_site import FakeJiraSite
from tests.itsm_helpers import TICKETS
from ticketsmith.connectors.itsm import FieldTarget, OurField
from ticketsmith.connectors.jira_rest import JiraRestConnector
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.connectors.triage_port import TicketTriager

FIELDS: dict[OurField, FieldTarget] = {
    "category": FieldTarget(field="customfield_10050", shape="value"),
    "urgency": FieldTarget(field="priority", shape="name", values={"Critical": "Highest"}),
    "assignment_group": FieldTarget(field="customfield_10060"),
}


def check_polls_page_and_keep_the_cursor(site: FakeJiraSite, connector: JiraRestConnector) -> None:
    """Five issues in pages of two, then nothing new, then one more: each poll lists what is new."""
    for summary, text in TICKETS:
        site.add_issue(summary, text)
    keys, cursor = connector.poll(None)
    assert keys == [f"IT-{n}" for n in range(1, 6)] and cursor == "IT-5"  # three pages of two
    assert connector.poll(cursor) == ([], "IT-5")
    site.add_issue("Another", "text")
    assert connector.poll(cursor) == (["IT-6"], "IT-6")


def check_every_issue_written_once(
    site: FakeJiraSite, store: SqliteJobStore, source: str, notes: Callable[[str], list[str]]
) -> None:
    """Each issue: its job finished, the mapped fields and the review label as triaged, one note with
    the job's marker and the summary, one audit record naming that note."""
    system = source.split(":")[0]
    for key, issue in site.issues.items():
        job = store.get(source, key)
        assert job is not None and job.state in ("done", "needs_review")
        result = job.result or {}
        fields = issue["fields"]
        assert fields["customfield_10050"] == {"value": result["category"]}
        assert fields["customfield_10060"] == result["assignment_group"]
        assert fields["priority"] == {"name": "Highest" if result["urgency"] == "Critical" else result["urgency"]}
        assert ("ticketsmith-review" in fields["labels"]) == (job.state == "needs_review")
        written = notes(key)
        assert len(written) == 1 and f"[ticketsmith:{source}:{key}]" in written[0] and result["summary"] in written[0]
        audit = store.audit_records(job.id)
        assert len(audit) == 1 and f"{system}:{key}:note" in audit[0].written_to


def check_a_second_pass_writes_nothing(
    site: FakeJiraSite, connector: JiraRestConnector, triager: TicketTriager
) -> None:
    """As after a crash between write-back and completion: the retry finds everything written."""
    edits_before = len(site.edits)
    ticket = connector.fetch("IT-1")
    marker = f"[ticketsmith:{connector.source}:IT-1]"
    written = connector.write_back(ticket, triager.triage(ticket.text, ticket_id="IT-1"), marker)
    assert len(site.edits) == edits_before and len(site.comments["IT-1"]) == 1
    assert all("kept-human-value" in w for w in written)
