"""`ticketsmith jobs agreement`: shadow-mode guesses against the labels humans set later, read back
from a fake Jira Cloud and a fake ServiceDesk Plus (two shapes of lookup value), as an operator runs it."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.servicedesk_plus import FakeServiceDeskPlus
from tests.fakes.triager import FakeTriager
from tests.itsm_helpers import TICKETS, drain
from ticketsmith.cli import app
from ticketsmith.connectors.agreement import agrees, decode, system_values
from ticketsmith.connectors.itsm import FieldTarget
from ticketsmith.connectors.itsm_worker import ItsmWorker
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.connectors.registry import connector_for
from ticketsmith.connectors.worker_config import load_worker_config
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager

IMPACTS = {"Organization": "1 - Whole company", "Department": "2 - Department", "Team": "3 - Team"}
T0 = 4_070_908_800_000  # 2099-01-01 in epoch milliseconds: every request is new to the first poll


class ScriptedTriager(FakeTriager):
    """Guesses the category its plan gives each ticket, and sends the planned ones to review; the
    other fields are the taxonomy's first labels (urgency Critical, impact Organization, ...)."""

    def __init__(self, taxonomy: Taxonomy, plan: dict[str, tuple[str, bool]]) -> None:
        super().__init__(taxonomy)
        self.plan = plan

    def model_label(self) -> str:
        return "fake.gguf"

    def triage(self, text: str, ticket_id: str | int | None = None) -> TriageResult:
        data = super().triage(text, ticket_id).model_dump(mode="json")
        category, review = self.plan[str(ticket_id)]
        data |= {
            "category": category,
            "subcategory": self.taxonomy.choices("subcategory", category)[0],
            "needs_review": review,
            "review_fields": ["category"] if review else [],
        }
        return TriageResult.model_validate(data, context={"taxonomy": self.taxonomy})


@dataclass
class Site:
    """Both fake systems, the worker YAML that names them, and the shared job store's folder."""

    jira: FakeJira
    sdp: FakeServiceDeskPlus
    jira_url: str
    sdp_url: str
    config: Path

    def write_config(self, jira_mode: str) -> None:
        self.config.write_text(
            f"""
state_dir: state
jira:
  - base_url: {self.jira_url}
    email: bot@example.com
    api_token: {{env: AGREE_JIRA_TOKEN}}
    project: IT
    mode: {jira_mode}
    fields:
      category: {{field: customfield_10050, shape: value}}
      urgency: {{field: priority, shape: name, values: {{Critical: Highest}}}}
      assignment_group: {{field: customfield_10060}}
servicedesk_plus:
  - base_url: {self.sdp_url}
    auth_token: {{env: AGREE_SDP_KEY}}
    mode: shadow
    fields:
      category: {{field: category, shape: name}}
      impact: {{field: impact, shape: name, values: {json.dumps(IMPACTS)}}}
      application: {{field: udf_fields.udf_sline_301}}
""",
            encoding="utf-8",
        )

    def run_worker(self, triager: ScriptedTriager) -> None:
        """One pass of the worker over every source, as `ticketsmith worker` builds it from the YAML."""
        settings = load_worker_config(self.config)
        store = SqliteJobStore(settings.state_dir / "jobs.db")
        for source in settings.itsm_sources():
            connector = connector_for(source.settings)
            drain(ItsmWorker(cast(Triager, triager), store, connector, "test-worker", poll_interval_s=0))
            connector.close()
        store.close()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("AGREE_JIRA_TOKEN", "secret-token")
    monkeypatch.setenv("AGREE_SDP_KEY", "6F00-TECH-KEY")
    jira, sdp = FakeJira(), FakeServiceDeskPlus()
    with serve(jira.app()) as jira_url, serve(sdp.app()) as sdp_url:
        yield Site(jira, sdp, jira_url, sdp_url, tmp_path / "worker.yaml")


def agreement(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["jobs", "agreement", *args])
    return result.exit_code, result.output


def triaged_in_shadow_then_labelled(site: Site, taxonomy: Taxonomy) -> list[str]:
    """Five Jira issues and three SDP requests triaged in shadow mode, a sixth Jira issue after Jira
    went live; then humans label some fields (agreeing or not), leave others empty, and delete IT-5.
    Returns the SDP request ids."""
    jira, sdp = site.jira, site.sdp
    for summary, text in TICKETS:
        jira.add_issue(summary, text)
    requests = [sdp.add_request(*TICKETS[i], created_ms=T0 + i) for i in range(3)]
    plan = {
        "IT-1": ("Network", False),
        "IT-2": ("Software", False),
        "IT-3": ("Hardware", True),
        "IT-4": ("Network", True),
        "IT-5": ("Hardware", False),
        "IT-6": ("Security", False),
        requests[0]: ("Network", False),
        requests[1]: ("Software", True),
        requests[2]: ("Hardware", False),
    }
    triager = ScriptedTriager(taxonomy, plan)
    site.write_config(jira_mode="shadow")
    site.run_worker(triager)
    assert jira.edits == [] and sdp.edits == []  # shadow: nothing written back
    jira.add_issue("Phishing mail", "I clicked a link in a strange mail.")
    site.write_config(jira_mode="live")  # the team switched Jira on; its shadow jobs stay comparable
    site.run_worker(triager)
    assert [key for key, _ in jira.edits] == ["IT-6"]

    def jira_set(key: str, **fields: Any) -> None:
        jira.issues[key]["fields"].update(fields)

    # Jira answers a select field as {self, value, id} and the priority as {self, name, id}.
    jira_set("IT-1", customfield_10050={"self": "x", "value": "Network", "id": "10021"})
    jira_set("IT-1", priority={"self": "x", "name": "Highest", "id": "1"}, customfield_10060="Service Desk")
    jira_set("IT-2", customfield_10050={"value": "Hardware", "id": "10020"}, priority={"name": "High", "id": "2"})
    jira_set("IT-3", customfield_10050={"value": "Hardware", "id": "10020"}, customfield_10060="Desktop Support")
    jira_set("IT-4", priority={"name": "Low", "id": "4"})
    del jira.issues["IT-5"]
    # SDP answers a lookup as {name, id}; its user-defined field is a plain string.
    first, second, third = (sdp.requests[request] for request in requests)
    first |= {"category": {"name": "Network", "id": "301"}, "impact": {"name": "1 - Whole company", "id": "1"}}
    first["udf_fields"] = {"udf_sline_301": "Not Applicable"}
    second |= {"category": {"name": "Software", "id": "302"}, "impact": {"name": "3 - Team", "id": "3"}}
    third |= {"category": {"name": "Network", "id": "301"}, "udf_fields": {"udf_sline_301": ""}}
    return requests


def tally(labelled: int, agreed: int) -> dict[str, Any]:
    return {"labelled": labelled, "agreed": agreed, "agreement": round(agreed / labelled, 4) if labelled else None}


def test_agreement_per_source_and_field(site: Site, taxonomy: Taxonomy) -> None:
    requests = triaged_in_shadow_then_labelled(site, taxonomy)
    code, out = agreement("--config", str(site.config), "--json")
    assert code == 0, out
    report = json.loads(out)
    jira, sdp = report["sources"]
    assert report["other_jobs"] == 0
    assert jira["source"] == "jira:IT" and sdp["source"] == f"servicedesk_plus:{site.sdp_url}"
    counts = ("jobs", "live", "shadow", "auto_accepted", "auto_accepted_share", "read", "unreadable")
    assert {key: jira[key] for key in counts} == dict(zip(counts, (6, 1, 5, 3, 0.6, 4, 1), strict=True))
    assert jira["unreadable_tickets"] == ["IT-5"] and "404" in jira["first_error"]
    assert {key: sdp[key] for key in counts} == dict(zip(counts, (3, 0, 3, 2, 0.6667, 3, 0), strict=True))
    rows = {(source["source"][:4], field["field"]): field for source in (jira, sdp) for field in source["fields"]}
    expected = {  # read, not labelled yet, overall, auto-accepted, needs review
        ("jira", "category"): (4, 1, tally(3, 2), tally(2, 1), tally(1, 1)),
        ("jira", "urgency"): (4, 1, tally(3, 1), tally(2, 1), tally(1, 0)),
        ("jira", "assignment_group"): (4, 2, tally(2, 1), tally(1, 1), tally(1, 0)),
        ("serv", "category"): (3, 0, tally(3, 2), tally(2, 1), tally(1, 1)),
        ("serv", "impact"): (3, 1, tally(2, 1), tally(1, 1), tally(1, 0)),
        ("serv", "application"): (3, 2, tally(1, 1), tally(1, 1), tally(0, 0)),
    }
    for where, (read, not_labelled, overall, auto, review) in expected.items():
        row = rows[where]
        assert (row["read"], row["not_labelled"]) == (read, not_labelled), where
        assert (row["overall"], row["auto_accepted"], row["needs_review"]) == (overall, auto, review), where
    assert sorted(rows[("jira", "urgency")]["mismatches"], key=lambda m: m["ticket"]) == [
        {"ticket": "IT-2", "guessed": "Critical", "human": "High", "needs_review": False},
        {"ticket": "IT-4", "guessed": "Critical", "human": "Low", "needs_review": True},
    ]
    # "3 - Team" decodes back into our label through the inverted `values` map
    assert rows[("serv", "impact")]["mismatches"] == [
        {"ticket": requests[1], "guessed": "Organization", "human": "Team", "needs_review": True}
    ]
    assert rows[("serv", "category")]["mismatches"][0]["human"] == "Network"


def test_the_text_report_and_its_filters(site: Site, taxonomy: Taxonomy) -> None:
    triaged_in_shadow_then_labelled(site, taxonomy)
    code, out = agreement("--config", str(site.config), "--source", "jira:IT", "--since", "1h")
    assert code == 0, out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines[0] == "jira:IT: 6 finished job(s): 5 in shadow mode, 1 live (skipped: we wrote their fields)"
    assert lines[1].startswith("tickets read back: 4, 1 unreadable (jira: GET /rest/api/3/issue/IT-5 answered 404")
    assert lines[2] == "would have been auto-accepted: 3 of 5 (60%)"
    assert lines[3:] == [
        "FIELD SYSTEM FIELD READ NOT YET AGREE AUTO-ACCEPTED NEEDS REVIEW",
        "category customfield_10050 4 1 2/3 (67%) 1/2 (50%) 1/1 (100%)",
        "urgency priority 4 1 1/3 (33%) 1/2 (50%) 0/1 (0%)",
        "assignment_group customfield_10060 4 2 1/2 (50%) 1/1 (100%) 0/1 (0%)",
    ]
    code, out = agreement("--config", str(site.config), "--limit", "2", "--json")
    assert code == 0 and sum(source["jobs"] for source in json.loads(out)["sources"]) == 2
    code, out = agreement("--config", str(site.config), "--since", "0", "--json")
    assert code == 0 and [source["jobs"] for source in json.loads(out)["sources"]] == [0, 0]


def test_config_errors_are_one_line(site: Site, taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch) -> None:
    triaged_in_shadow_then_labelled(site, taxonomy)
    code, out = agreement("--config", str(site.config), "--source", "jira:OPS")
    assert code == 2 and out.strip().splitlines() == [
        f"error: no ITSM source 'jira:OPS' in {site.config}; its sources: jira:IT, servicedesk_plus:{site.sdp_url}"
    ]
    monkeypatch.delenv("AGREE_SDP_KEY")
    code, out = agreement("--config", str(site.config))
    assert code == 2 and out.strip().splitlines() == ["error: the environment variable AGREE_SDP_KEY is not set"]
    code, out = agreement("--config", str(site.config.parent / "missing.yaml"))
    assert code == 2 and len(out.strip().splitlines()) == 1


def test_decoding_undoes_each_shape_and_translation() -> None:
    priority = FieldTarget(field="priority", shape="name", values={"Critical": "Highest", "High": "Highest"})
    assert system_values(priority, {"self": "x", "name": "Highest", "id": "1"}) == ["Highest"]
    assert decode(priority, "Highest") == "Critical" and decode(priority, "Low") == "Low"
    assert agrees(priority, "High", ["highest"])  # two labels, one system value: either agrees
    assert not agrees(priority, "Medium", ["Highest"])
    by_id = FieldTarget(field="customfield_1", shape="id", values={"Network": "10021"})
    assert system_values(by_id, {"id": "10021", "value": "Network"}) == ["10021"]
    assert agrees(by_id, "Network", system_values(by_id, {"id": "10021"}))
    plain = FieldTarget(field="category")
    assert system_values(plain, ["VPN", {"value": "Wi-Fi"}]) == ["VPN", "Wi-Fi"]  # a multi-select
    empties: list[Any] = [None, "", " ", [], {"name": None}]
    assert [system_values(plain, empty) for empty in empties] == [[]] * 5
