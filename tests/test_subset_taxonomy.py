"""A taxonomy that defines only some label fields, as an export labelled with an assignment group
alone gives: the grammar, the schema, the output, the review and the write-back cover the summary and
the fields it defines, with no placeholder labels, through the real model and a real head."""

import json
import random
from pathlib import Path

import jsonschema
import pytest

from ticketsmith.connectors.itsm import FieldTarget, OurField, RemoteTicket, fields_to_write, render_note
from ticketsmith.runtime.grammar import compile_grammar
from ticketsmith.runtime.schema import result_json_schema
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.taxonomy import load_taxonomy
from ticketsmith.runtime.triager import Triager

GROUPS_ONLY = "name: groups-only\nassignment_groups: [Workplace, Identity Team, Network Team]\n"
PROBLEMS = {
    "Workplace": ["printer {} jams on every page", "laptop {} screen is cracked", "docking station {} dead"],
    "Identity Team": ["password {} expired, locked out", "need access to share {}", "MFA prompt {} never comes"],
    "Network Team": ["VPN {} drops every hour", "Wi-Fi in room {} is down", "cannot reach server {}"],
}


@pytest.fixture(scope="module")
def groups_taxonomy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("subset") / "groups.yaml"
    path.write_text(GROUPS_ONLY, encoding="utf-8")
    return path


def _tickets(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        group = rng.choice(sorted(PROBLEMS))
        rows.append(
            {
                "id": f"t{seed}-{i}",
                "text": rng.choice(PROBLEMS[group]).format(rng.randint(1, 999)),
                "assignment_group": group,
            }
        )
    return rows


def test_grammar_and_schema_cover_the_defined_fields_only(groups_taxonomy: Path) -> None:
    taxonomy = load_taxonomy(groups_taxonomy)
    grammar = compile_grammar(taxonomy)
    assert 'root ::= "{\\"summary\\":\\"" summary "\\",\\"assignment_group\\":\\"" assignment-group "\\"}"' in grammar
    assert "category" not in grammar and "urgency" not in grammar
    schema = result_json_schema(taxonomy)
    assert "category" not in schema["properties"] and "assignment_group" in schema["required"]
    assert schema["$defs"]["FieldConfidence"]["required"] == ["summary", "assignment_group"]


@pytest.mark.model  # trains a head and loads the real model
def test_groups_only_model_triages_reviews_and_writes_back_what_it_defines(
    groups_taxonomy: Path, tmp_path: Path
) -> None:
    pytest.importorskip("sklearn", reason="the training extra is not installed")
    from ticketsmith.train.label_head import fit_run_head

    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _tickets(120, 1)), encoding="utf-8")
    dev.write_text("".join(json.dumps(r) + "\n" for r in _tickets(60, 2)), encoding="utf-8")
    report = fit_run_head(
        train,
        dev,
        groups_taxonomy,
        tmp_path / "run",
        base=None,
        max_examples=None,
        target_precision=0.9,
        progress=lambda _: None,
    )
    assert set(report.fields) == {"assignment_group"}
    triager = Triager(load_settings(model_path=tmp_path / "run", n_threads=2))
    try:
        untrained = Triager(load_settings(taxonomy_path=groups_taxonomy, n_threads=2))
        try:
            guess = untrained.triage("VPN 12 drops every hour")
        finally:
            untrained.close()
        assert guess.needs_review and guess.untrained_fields == ["assignment_group"]
        result = triager.triage("VPN 17 drops every hour", "T-1")
    finally:
        triager.close()
    output = json.loads(result.model_dump_json())
    jsonschema.validate(output, result_json_schema(load_taxonomy(groups_taxonomy)))
    assert output["assignment_group"] == "Network Team"
    assert set(output) >= {"summary", "assignment_group"} and "category" not in output and "urgency" not in output
    assert set(output["confidence"]) == {"summary", "assignment_group"}
    assert output["untrained_fields"] == [] and output["review_fields"] in ([], ["assignment_group"])
    mapping: dict[OurField, FieldTarget] = {
        "category": FieldTarget(field="customfield_1"),  # mapped, but this taxonomy has no category: skipped
        "assignment_group": FieldTarget(field="assignee_group", shape="name"),
    }
    updates, written, _ = fields_to_write(mapping, RemoteTicket(key="T-1", text="VPN"), result, write_unsure=True)
    assert updates == {"assignee_group": {"name": "Network Team"}} and written == ["assignee_group"]
    note = render_note(result, "[ts:1]")
    assert "assignment_group: Network Team" in note and "category" not in note
