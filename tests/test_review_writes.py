"""Review means review: on a ticket that needs review, the fields under their threshold are left
for the human, the review route is set, and the note lists every guess with its confidence."""

import pytest

from ticketsmith.connectors.itsm import FieldTarget, OurField, RemoteTicket, fields_to_write, render_note
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import Taxonomy

LABELS = {
    "category": "Network",
    "subcategory": "VPN",
    "application": "Cisco AnyConnect",
    "urgency": "High",
    "impact": "Team",
    "assignment_group": "Network Operations",
}
MAPPING: dict[OurField, FieldTarget] = {
    "category": FieldTarget(field="customfield_1", shape="value"),
    "urgency": FieldTarget(field="priority", shape="name", values={"High": "P2"}),
    "assignment_group": FieldTarget(field="group", shape="name"),
}


def _result(taxonomy: Taxonomy, review_fields: list[str]) -> TriageResult:
    confidence = {"summary": 0.9, **{f: (0.3 if f in review_fields else 0.97) for f in LABELS}}
    return TriageResult.model_validate(
        {
            "summary": "VPN drops for the finance team.",
            **LABELS,
            "confidence": confidence,
            "overall_confidence": min(confidence.values()),
            "needs_review": bool(review_fields),
            "review_fields": review_fields,
            "truncated": False,
            "input_tokens": 12,
        },
        context={"taxonomy": taxonomy},
    )


@pytest.mark.parametrize("write_unsure", [False, True])
def test_unsure_fields_are_left_for_the_human(taxonomy: Taxonomy, write_unsure: bool) -> None:
    result = _result(taxonomy, ["category", "urgency"])
    ticket = RemoteTicket(key="IT-1", text="vpn", current={"group": None})
    route = {"group": {"name": "Human Triage"}}
    updates, written, kept = fields_to_write(MAPPING, ticket, result, route, write_unsure)
    if write_unsure:
        assert updates == {"customfield_1": {"value": "Network"}, "priority": {"name": "P2"}, "group": route["group"]}
    else:  # the confident group guess gives way to the route; the unsure two are not written
        assert updates == {"group": {"name": "Human Triage"}} and written == ["group"] and kept == []
    note = render_note(result, "[m]")
    assert "category: Network (30%, unsure: for a human to decide)" in note
    assert "assignment_group: Network Operations (97%)" in note and "needs human review: category, urgency" in note


def test_an_accepted_ticket_writes_every_mapped_field(taxonomy: Taxonomy) -> None:
    updates, _, _ = fields_to_write(MAPPING, RemoteTicket(key="IT-2", text="vpn"), _result(taxonomy, []))
    assert updates == {
        "customfield_1": {"value": "Network"},
        "priority": {"name": "P2"},
        "group": {"name": "Network Operations"},
    }
