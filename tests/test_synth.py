import itertools
import json
import random
import re
import shutil
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ticketsmith.cli import app
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.schema import Ticket
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy
from ticketsmith.train.synth import Draft, SyntheticTicket, draw, generate
from ticketsmith.train.synth_bank import SCALE_FIELDS, STYLES_FILE, Bank, check_bank, default_bank_dir, load_bank
from ticketsmith.train.synth_plan import slug
from ticketsmith.train.synth_style import nonnative

REPO = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "data" / "tiny_taxonomy.yaml"

# A bank of one subcategory, for the tests that need to know exactly what the bank holds.
PRINTERS: dict[str, Any] = {
    "category": "Hardware",
    "subcategories": [
        {
            "name": "Printer and Scanner",
            "scenarios": [
                {
                    "summary": "Printer jams on every page",
                    "urgency": "Medium",
                    "impact": "Team",
                    "urgencies": ["High"],
                    "impacts": ["Department"],
                    "phrasings": [
                        "the printer eats every sheet",
                        "Paper gets stuck in tray 2.",
                        "printer jamming again",
                    ],
                    "fr": ["L'imprimante bourre à chaque page."],
                    "de": ["Der Drucker hat bei jeder Seite einen Papierstau."],
                    "alerts": ["[PaperCut] PRN-3F-01: paper jam in tray 2"],
                },
                {
                    "summary": "Expense report export to PDF fails",
                    "application": "Adobe Acrobat",
                    "urgency": "Low",
                    "impact": "Individual",
                    "phrasings": [
                        "printing to pdf fails",
                        "Save as PDF gives an error.",
                        "cannot print my form to pdf",
                    ],
                },
            ],
        }
    ],
}


def small_bank(folder: Path, *files: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(default_bank_dir() / STYLES_FILE, folder / STYLES_FILE)
    for data in files:
        category = str(data["category"])
        (folder / f"{slug(category)}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def only(taxonomy: Taxonomy, category: str, subcategories: list[dict[str, object]]) -> Taxonomy:
    """The taxonomy with one category holding `subcategories` (its other label sets unchanged)."""
    data = taxonomy.model_dump(mode="json")
    data["categories"] = [
        {**next(c for c in data["categories"] if c["name"] == category), "subcategories": subcategories}
    ]
    return Taxonomy.model_validate(data)


@pytest.fixture(scope="module")
def bank() -> Bank:
    return load_bank()


@pytest.fixture(scope="module")
def drafts(taxonomy: Taxonomy) -> list[Draft]:
    return list(draw(taxonomy, 600, seed=1, foreign_share=0.2))


# The bank itself


def test_the_bank_files_there_are_match_the_default_taxonomy(bank: Bank, taxonomy: Taxonomy) -> None:
    check_bank(bank, taxonomy)  # every category, subcategory, application, level and group exists
    for path, bank_file in bank.files:
        assert path.name == f"{slug(bank_file.category)}.yaml"
    assert bank.styles.scale("urgency") == taxonomy.choices("urgency")
    assert bank.styles.scale("impact") == taxonomy.choices("impact")


def test_the_bank_keeps_its_authoring_rules(bank: Bank) -> None:
    """docs/synth-bank.md: at least 10 scenarios a subcategory, a quarter of them in French or German."""
    for path, bank_file in bank.files:
        for entry in bank_file.subcategories:
            where = f"{path.name}: {entry.name}"
            assert len(entry.scenarios) >= 10, where
            assert sum(bool(s.fr or s.de) for s in entry.scenarios) * 4 >= len(entry.scenarios), where


def test_the_wheel_carries_the_bank() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "bank/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["ticketsmith.train"]
    assert default_bank_dir().resolve() == (REPO / "train" / "bank").resolve()


def test_a_bad_bank_entry_names_its_file_and_place(tmp_path: Path, taxonomy: Taxonomy) -> None:
    bad = json.loads(json.dumps(PRINTERS))
    bad["subcategories"][0]["scenarios"][1]["urgency"] = "Urgent"
    with pytest.raises(ConfigError, match=r"hardware\.yaml.*\n.*subcategories\[0\]\.scenarios\[1\].*'Urgent'"):
        load_bank(small_bank(tmp_path / "levels", bad))
    bad["subcategories"][0]["scenarios"][1].update(urgency="Low", application="Wordpad")
    with pytest.raises(ConfigError, match=r"scenarios\[1\] \('Expense report export to PDF fails'\).*'Wordpad'"):
        check_bank(load_bank(small_bank(tmp_path / "names", bad)), taxonomy)
    bad["subcategories"][0]["scenarios"][1]["phrasings"] = ["only one way to say it"]
    with pytest.raises(ConfigError, match=r"scenarios\[1\]\.phrasings"):
        load_bank(small_bank(tmp_path / "phrasings", bad))


# Tickets


def test_same_seed_same_tickets(taxonomy: Taxonomy) -> None:
    assert list(generate(taxonomy, 50, seed=3)) == list(generate(taxonomy, 50, seed=3))
    assert list(generate(taxonomy, 50, seed=3)) != list(generate(taxonomy, 50, seed=4))


def test_labels_are_valid_and_cover_the_taxonomy(drafts: list[Draft], taxonomy: Taxonomy) -> None:
    tickets = [d.ticket for d in drafts]
    for ticket in tickets:
        Ticket.model_validate(ticket.model_dump(exclude={"id", "text", "language"}), context={"taxonomy": taxonomy})
        assert ticket.summary not in ticket.text
        assert ticket.text.strip() and "{" not in ticket.text
    subcategories = {(c.name, s.name) for c in taxonomy.categories for s in c.subcategories}
    assert {(t.category, t.subcategory) for t in tickets} == subcategories
    assert {t.urgency for t in tickets} == set(taxonomy.choices("urgency"))
    assert {t.impact for t in tickets} == set(taxonomy.choices("impact"))
    assert len({t.application for t in tickets}) > 5
    assert len({t.id for t in tickets}) == len(tickets)
    assert {d.style.split("+")[0] for d in drafts} >= {"mail", "chat", "form"}


def test_subcategories_are_cycled_evenly(drafts: list[Draft]) -> None:
    counts = Counter(d.ticket.subcategory for d in drafts)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_ticket_has_its_scenarios_application(drafts: list[Draft], taxonomy: Taxonomy) -> None:
    for draft in drafts:
        ticket, scenario = draft.ticket, draft.story.scenario
        expected = scenario.application if scenario is not None else "Not Applicable"
        assert ticket.application == expected, ticket.text
        if ticket.subcategory == "Printer and Scanner":
            assert ticket.application not in ("Workday", "SAP ERP", "Salesforce", "Okta", "Zoom"), ticket.text


def _implies(bank: Bank, field: str, level: str, sentence: str, language: str) -> bool:
    cues = bank.styles.urgency if field == "urgency" else bank.styles.impact
    templates: tuple[str, ...] = getattr(cues[level], language)
    return any(re.fullmatch(re.escape(t).replace(re.escape("{department}"), ".+"), sentence) for t in templates)


def test_a_label_other_than_the_scenarios_comes_with_its_cue(drafts: list[Draft], bank: Bank) -> None:
    changed = 0
    for draft in drafts:
        ticket = draft.ticket
        for cue in draft.cues:
            assert getattr(ticket, cue.field) == cue.level
            assert _implies(bank, cue.field, cue.level, cue.sentence, ticket.language)
            assert cue.sentence.rstrip(".").casefold() in ticket.text.casefold()  # a chat line drops the stop
        for field, _ in SCALE_FIELDS:
            own, _ = draft.story.levels(field)
            if getattr(ticket, field) != own:
                changed += 1
                assert any(cue.field == field for cue in draft.cues), ticket.text
    assert changed > 20


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), share=st.floats(0.0, 1.0))
def test_any_seed_gives_valid_coherent_tickets(taxonomy: Taxonomy, seed: int, share: float) -> None:
    for draft in draw(taxonomy, 25, seed=seed, foreign_share=share):
        ticket = draft.ticket
        SyntheticTicket.model_validate(ticket.model_dump(), context={"taxonomy": taxonomy})
        if draft.story.scenario is not None:
            scenario = draft.story.scenario
            assert ticket.application == scenario.application
            assert ticket.summary == scenario.summary
            assert ticket.urgency in (scenario.urgency, *scenario.urgencies)
            assert ticket.impact in (scenario.impact, *scenario.impacts)
        if draft.style.startswith("chat"):
            assert ticket.text == ticket.text.lower()


def test_french_and_german_come_at_the_share_asked(taxonomy: Taxonomy) -> None:
    assert {t.language for t in generate(taxonomy, 200, seed=2, foreign_share=0.0)} == {"en"}
    languages = Counter(t.language for t in generate(taxonomy, 1000, seed=2, foreign_share=0.3))
    assert 0.24 <= (languages["fr"] + languages["de"]) / 1000 <= 0.36
    assert languages["fr"] > 100 and languages["de"] > 100


def test_a_scenario_is_told_as_the_bank_has_it(tmp_path: Path, taxonomy: Taxonomy) -> None:
    bank = load_bank(small_bank(tmp_path, PRINTERS))
    printers = only(taxonomy, "Hardware", [{"name": "Printer and Scanner"}])
    drafts = list(draw(printers, 300, seed=5, foreign_share=0.2, bank=bank))
    assert {d.ticket.summary for d in drafts} == {"Printer jams on every page", "Expense report export to PDF fails"}
    assert {d.ticket.assignment_group for d in drafts} == {"Desktop Support"}  # the category's default_group
    assert {"alert", "forwarded-alert"} <= {d.style for d in drafts}
    for draft in drafts:
        ticket = draft.ticket
        if ticket.summary.startswith("Expense"):
            assert (ticket.application, ticket.urgency, ticket.impact) == ("Adobe Acrobat", "Low", "Individual")
            assert ticket.language == "en"  # the scenario has no French or German
        if draft.style == "alert":
            assert ticket.text == "[PaperCut] PRN-3F-01: paper jam in tray 2" and not draft.cues
            assert (ticket.urgency, ticket.impact) == ("Medium", "Team")


def test_non_native_rewrites_keep_the_meaning_and_change_the_english(bank: Bank) -> None:
    text = "I have a question about the report, please let me know."
    rewritten = {nonnative(text, bank.styles, random.Random(seed)) for seed in range(30)}
    assert "I am having a doubt about report, kindly revert back to me." in rewritten
    assert len(rewritten) > 5


# Taxonomies the bank was not written for


def test_a_subcategory_with_keywords_but_no_scenarios_gets_neutral_keyword_text(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    bank = load_bank(small_bank(tmp_path, PRINTERS))
    keywords = ["plotter", "label printer"]
    custom = only(taxonomy, "Hardware", [{"name": "Printer and Scanner"}, {"name": "Plotters", "keywords": keywords}])
    drafts = [d for d in draw(custom, 200, seed=6, bank=bank) if d.ticket.subcategory == "Plotters"]
    assert len(drafts) == 100
    for draft in drafts:
        ticket = draft.ticket
        assert draft.story.scenario is None and ticket.application == "Not Applicable"
        assert any(k in ticket.text.casefold() or k in ticket.summary for k in keywords)
        assert ticket.urgency == "Medium" or any(c.field == "urgency" for c in draft.cues)
        assert ticket.impact == "Individual" or any(c.field == "impact" for c in draft.cues)


def test_a_subcategory_with_neither_scenarios_nor_keywords_is_refused_before_the_first_ticket(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    bank = load_bank(small_bank(tmp_path, PRINTERS))
    custom = only(taxonomy, "Hardware", [{"name": "Printer and Scanner"}, {"name": "Plotters"}])
    with pytest.raises(ConfigError) as refused:
        generate(custom, 5, bank=bank)  # refused on the call, not on the first next()
    message = str(refused.value)
    assert "'Plotters'" in message and "'Hardware'" in message
    assert "bank file entry (train/bank/hardware.yaml" in message and "keywords" in message


def test_a_taxonomy_with_other_scales_and_no_placeholder_application() -> None:
    """The tiny taxonomy: two-level scales (mapped by position), no "Not Applicable" (the text
    names the application), no default groups (one group a category), no scenarios for Access."""
    tiny = load_taxonomy(TINY)
    drafts = list(draw(tiny, 120, seed=3))
    for draft in drafts:
        ticket = draft.ticket
        SyntheticTicket.model_validate(ticket.model_dump(), context={"taxonomy": tiny})
        assert str(ticket.application).casefold() in ticket.text.casefold()
        for cue in draft.cues:
            mapped = {"Critical": "High", "High": "High", "Medium": "Low", "Low": "Low"}
            scope = {"Organization": "Many Users", "Department": "Many Users", "Team": "One User"}
            assert getattr(ticket, cue.field) == {**mapped, **scope, "Individual": "One User"}[cue.level]
    groups = {(d.ticket.category, d.ticket.assignment_group) for d in drafts}
    assert groups == {("Hardware", "Desktop Support"), ("Access", "Identity Team")}
    assert {(d.ticket.urgency, d.ticket.impact) for d in drafts} == set(
        itertools.product(tiny.choices("urgency"), tiny.choices("impact"))
    )


def test_a_taxonomy_without_every_field_is_refused(taxonomy: Taxonomy) -> None:
    data = taxonomy.model_dump(mode="json")
    data["impact"] = []
    with pytest.raises(ConfigError, match="lacks impact"):
        generate(Taxonomy.model_validate(data), 5)


# The command


def test_data_synth_writes_valid_jsonl(tmp_path: Path, taxonomy: Taxonomy) -> None:
    out = tmp_path / "synth.jsonl"
    result = CliRunner().invoke(app, ["data", "synth", "-n", "25", "--seed", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 25
    tickets = [SyntheticTicket.model_validate(json.loads(line), context={"taxonomy": taxonomy}) for line in lines]
    assert tickets == list(generate(taxonomy, 25, seed=7))
