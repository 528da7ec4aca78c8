"""Labelled synthetic tickets drawn from the hand-written scenario bank, reproducible with a seed.

Each ticket tells one scenario of its subcategory (subcategories are cycled evenly), so its text,
application, urgency and impact agree: an urgency or impact other than the scenario's own comes
only with the cue sentence that implies it. The summary is the scenario's, written as an agent
would, never a copy of the text. Format and rules: docs/synth-bank.md."""

import random
from collections.abc import Iterator
from dataclasses import dataclass

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS, Ticket
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Taxonomy
from ticketsmith.train.synth_bank import SCALE_FIELDS, Bank, Language, ScaleField, load_bank
from ticketsmith.train.synth_plan import Plan, Slot, Story, make_plan
from ticketsmith.train.synth_style import write, write_alert

FOREIGN: tuple[Language, ...] = ("fr", "de")
ALERT_SHARE = 0.35  # of the English tickets of a scenario that has alerts
FORWARDED_ALERT_SHARE = 0.6  # the rest arrive as the monitoring tool wrote them, without cues
DETAIL_SHARE = 0.4
OWN_CUE_SHARE = 0.2  # a cue that repeats the scenario's own level: people say it anyway


class SyntheticTicket(Ticket):
    """A labelled ticket; validated against the taxonomy like any answer (context={"taxonomy": ...})."""

    id: str
    text: str
    language: str


@dataclass(frozen=True)
class Cue:
    """A sentence added to a ticket, with the level (on the bank's scale) that it implies."""

    field: ScaleField
    level: str
    sentence: str


@dataclass(frozen=True)
class Draft:
    """A ticket with how it was made: the story told, the cues added and the writing style."""

    ticket: SyntheticTicket
    story: Story
    cues: tuple[Cue, ...]
    style: str


def generate(
    taxonomy: Taxonomy, n: int, seed: int = 0, foreign_share: float = 0.1, *, bank: Bank | None = None
) -> Iterator[SyntheticTicket]:
    """`n` labelled tickets; a taxonomy it cannot write for is refused here, before the first one."""
    return (draft.ticket for draft in draw(taxonomy, n, seed, foreign_share, bank=bank))


def draw(
    taxonomy: Taxonomy, n: int, seed: int = 0, foreign_share: float = 0.1, *, bank: Bank | None = None
) -> Iterator[Draft]:
    """The tickets of `generate` with their provenance (for tests and for inspecting the bank)."""
    missing = [field for field in LABEL_FIELDS if field not in taxonomy.fields]
    if missing:  # every ticket is labelled in every field: a taxonomy without one cannot take them
        raise ConfigError(
            f"data synth needs a taxonomy that defines every field; '{taxonomy.name}' lacks {', '.join(missing)}"
        )
    if not 0.0 <= foreign_share <= 1.0:
        raise ValueError(f"foreign_share is a share of the tickets, between 0 and 1, not {foreign_share}")
    plan = make_plan(taxonomy, bank if bank is not None else load_bank())
    return _draw(plan, taxonomy, n, seed, foreign_share)


def _language(slot: Slot, rng: random.Random, foreign_share: float) -> Language:
    """French or German at `foreign_share`, where the subcategory has text in it (else the other)."""
    if rng.random() >= foreign_share:
        return "en"
    first = rng.choice(FOREIGN)
    for language in (first, *(f for f in FOREIGN if f != first)):
        if any(story.texts[language] for story in slot.stories):
            return language
    return "en"


def _level(
    plan: Plan, story: Story, field: ScaleField, language: Language, rng: random.Random
) -> tuple[str, Cue | None]:
    """The story's own level, or one of its alternatives with that level's cue sentence."""
    own, alternatives = story.levels(field)
    choices = tuple(dict.fromkeys((own, *alternatives)))
    level = rng.choice(choices)
    if level == own and rng.random() >= OWN_CUE_SHARE:
        return level, None
    cues = plan.styles.urgency if field == "urgency" else plan.styles.impact
    department = rng.choice(plan.styles.departments.of(language))
    return level, Cue(field, level, rng.choice(cues[level].of(language)).format(department=department))


def _one(plan: Plan, taxonomy: Taxonomy, slot: Slot, ticket_id: str, rng: random.Random, share: float) -> Draft:
    language = _language(slot, rng, share)
    story = rng.choice([s for s in slot.stories if s.texts[language]])
    alert = rng.choice(story.alerts) if language == "en" and story.alerts and rng.random() < ALERT_SHARE else None
    # An alert as the tool wrote it has no cues, nor a named application: the story's own labels.
    quiet = alert is not None and story.application is not None and rng.random() >= FORWARDED_ALERT_SHARE
    levels: dict[str, str] = {}
    cues: list[Cue] = []
    for field, _ in SCALE_FIELDS:
        level, cue = (story.levels(field)[0], None) if quiet else _level(plan, story, field, language, rng)
        levels[field] = plan.level(field, level)
        cues.extend([cue] if cue else [])
    labelled = [cue.sentence for cue in cues]
    application = story.application
    if application is None:  # the taxonomy has no "Not Applicable": the text names the application
        application = rng.choice(plan.applications)
        mention = rng.choice(plan.styles.fallback.application_mentions.of(language))
        labelled.append(mention.format(application=application))
    if alert is not None:
        written = write_alert(alert, labelled, language, plan.styles, rng, forwarded=not quiet)
    else:
        problem = [rng.choice(story.texts[language])]
        if language == "en" and story.details and rng.random() < DETAIL_SHARE:
            problem.append(rng.choice(story.details))
        written = write(problem, labelled, language, plan.styles, rng)
    fields = {
        "id": ticket_id,
        "text": written.text,
        "summary": rng.choice(story.summaries)[:SUMMARY_MAX_CHARS],
        "category": slot.category,
        "subcategory": slot.subcategory,
        "application": application,
        **levels,
        "assignment_group": slot.assignment_group,
        "language": language,
    }
    ticket = SyntheticTicket.model_validate(fields, context={"taxonomy": taxonomy})
    return Draft(ticket, story, tuple(cues), written.style)


def _draw(plan: Plan, taxonomy: Taxonomy, n: int, seed: int, foreign_share: float) -> Iterator[Draft]:
    rng = random.Random(seed)
    order = list(range(len(plan.slots)))
    rng.shuffle(order)
    for i in range(n):
        yield _one(plan, taxonomy, plan.slots[order[i % len(order)]], f"syn-{seed}-{i:06d}", rng, foreign_share)
