"""What `data synth` can write for one taxonomy: each subcategory's stories, drawn from the bank.

The bank is written for the default taxonomy. Another taxonomy uses the subcategories it shares
with the bank (same category and subcategory names), the bank's urgency and impact levels mapped
onto its own scales by position, and neutral keyword text for a subcategory the bank lacks; a
subcategory with neither is refused before the first ticket, so no ticket carries made-up text."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import Category, Label, Taxonomy
from ticketsmith.train.synth_bank import (
    LANGUAGES,
    PLACEHOLDER_APPLICATIONS,
    Bank,
    Language,
    ScaleField,
    Scenario,
    Styles,
    SubcategoryEntry,
)


@dataclass(frozen=True)
class Story:
    """One scenario as a taxonomy labels it; levels stay on the bank's scale (see `Plan.level`)."""

    summaries: tuple[str, ...]
    # The taxonomy's application; None where it has no "Not Applicable": the ticket names one.
    application: str | None
    urgency: str
    impact: str
    urgencies: tuple[str, ...]  # other levels the story may take, each with its cue sentence
    impacts: tuple[str, ...]
    texts: Mapping[Language, tuple[str, ...]]
    details: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    scenario: Scenario | None = None  # None: written from the subcategory's keywords

    def levels(self, field: ScaleField) -> tuple[str, tuple[str, ...]]:
        """The story's own level of `field` and its alternatives."""
        return (self.urgency, self.urgencies) if field == "urgency" else (self.impact, self.impacts)


@dataclass(frozen=True)
class Slot:
    """One subcategory of the taxonomy with its assignment group and the stories told under it."""

    category: str
    subcategory: str
    assignment_group: str
    stories: tuple[Story, ...]


@dataclass(frozen=True)
class Plan:
    slots: tuple[Slot, ...]
    styles: Styles
    scales: Mapping[ScaleField, Mapping[str, str]]  # bank level -> the taxonomy's label
    applications: tuple[str, ...]

    def level(self, field: ScaleField, bank_level: str) -> str:
        return self.scales[field][bank_level]


def scale_map(bank_scale: tuple[str, ...], labels: tuple[Label, ...]) -> dict[str, str]:
    """The bank's levels as the taxonomy's labels: by name where it has them all, else by position
    (both scales run from most to least severe)."""
    names = [label.name for label in labels]
    if set(bank_scale) <= set(names):
        return {level: level for level in bank_scale}
    size = len(names)
    return {level: names[min(size - 1, int((i + 0.5) * size / len(bank_scale)))] for i, level in enumerate(bank_scale)}


def slug(category: str) -> str:
    return re.sub(r"[\s&]+", "-", category.strip().lower())


def _placeholder(taxonomy: Taxonomy) -> str | None:
    return next((a.name for a in taxonomy.applications if a.name.casefold() in PLACEHOLDER_APPLICATIONS), None)


def _story(scenario: Scenario, applications: tuple[str, ...], placeholder: str | None) -> Story | None:
    """The scenario for this taxonomy; None where it names an application the taxonomy lacks."""
    if scenario.application in applications:
        application: str | None = scenario.application
    elif scenario.application.casefold() in PLACEHOLDER_APPLICATIONS:
        application = placeholder
    else:
        return None
    return Story(
        summaries=(scenario.summary,),
        application=application,
        urgency=scenario.urgency,
        impact=scenario.impact,
        urgencies=scenario.urgencies,
        impacts=scenario.impacts,
        texts={language: scenario.texts(language) for language in LANGUAGES},
        details=scenario.details,
        alerts=scenario.alerts,
        scenario=scenario,
    )


def _keyword_stories(subcategory: Label, styles: Styles, placeholder: str | None) -> tuple[Story, ...]:
    """Neutral text about each keyword: the middle urgency and the narrowest impact as written,
    the other levels only with their cues."""
    urgency, impact = styles.scale("urgency"), styles.scale("impact")
    stories = []
    for keyword in subcategory.keywords:
        fill = {"keyword": keyword, "Keyword": keyword[:1].upper() + keyword[1:]}
        stories.append(
            Story(
                summaries=tuple(t.format(**fill) for t in styles.fallback.summaries),
                application=placeholder,
                urgency=urgency[len(urgency) // 2],
                impact=impact[-1],
                urgencies=urgency,
                impacts=impact,
                texts={lang: tuple(t.format(**fill) for t in styles.fallback.phrasings.of(lang)) for lang in LANGUAGES},
            )
        )
    return tuple(stories)


def _group(category: Category, index: int, entry: SubcategoryEntry | None, groups: tuple[str, ...]) -> str:
    """The entry's group, else the category's default; else one group per category, always the same."""
    wanted = entry.assignment_group if entry is not None else None
    if wanted is not None and wanted in groups:
        return wanted
    return category.default_group or groups[index % len(groups)]


def _refusal(category: str, subcategory: str, entry: SubcategoryEntry | None) -> str:
    if entry is None:
        why = "the bank has no entry for it and the taxonomy gives it no keywords"
    else:
        why = "its bank scenarios all name applications the taxonomy lacks, and the taxonomy gives it no keywords"
    return (
        f"data synth cannot write tickets for subcategory '{subcategory}' of category '{category}': {why}. "
        f"Add a bank file entry (train/bank/{slug(category)}.yaml, see docs/synth-bank.md) "
        "or keywords to the subcategory in the taxonomy."
    )


def make_plan(taxonomy: Taxonomy, bank: Bank) -> Plan:
    """The stories of every subcategory; refuses the whole taxonomy if any subcategory has none."""
    applications = taxonomy.choices("application")
    groups = taxonomy.choices("assignment_group")
    placeholder = _placeholder(taxonomy)
    slots: list[Slot] = []
    refusals: list[str] = []
    for index, category in enumerate(taxonomy.categories):
        for subcategory in category.subcategories:
            found = bank.entry(category.name, subcategory.name)
            entry = found[2] if found else None
            scenarios = entry.scenarios if entry else ()
            stories = tuple(s for s in (_story(sc, applications, placeholder) for sc in scenarios) if s is not None)
            if not stories:
                stories = _keyword_stories(subcategory, bank.styles, placeholder)
            if not stories:
                refusals.append(_refusal(category.name, subcategory.name, entry))
                continue
            group = _group(category, index, entry, groups)
            slots.append(Slot(category.name, subcategory.name, group, stories))
    if refusals:
        raise ConfigError("\n".join(refusals))
    scales: dict[ScaleField, dict[str, str]] = {
        "urgency": scale_map(bank.styles.scale("urgency"), taxonomy.urgency),
        "impact": scale_map(bank.styles.scale("impact"), taxonomy.impact),
    }
    return Plan(tuple(slots), bank.styles, scales, applications)
