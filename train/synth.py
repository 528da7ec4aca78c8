"""Labelled synthetic tickets generated from a taxonomy, reproducible with a seed.

Every subcategory, urgency x impact pair and application is cycled through in proportion; the text
varies in phrasing, length, typos, greetings, signatures, forwarded-mail noise and language, and
the summary target is a short rewrite built from the labels, not a copy of the text."""

import itertools
import random
from collections.abc import Iterator

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS, Ticket
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Label, Taxonomy

URGENCY_CUES = {
    0: ["This is blocking all my work, please help immediately!", "URGENT - nothing works.", "Critical: we are down."],
    1: ["I have a deadline today, please look at it soon.", "Quite urgent please.", "This is hurting us badly."],
    2: ["There is a workaround but it is annoying.", "Please look at it when you can today.", ""],
    3: ["No rush.", "Whenever you have time.", "Low priority, just wanted to report it."],
}
IMPACT_CUES = {
    0: ["The whole company is affected.", "All sites report the same.", "Customers are affected too."],
    1: ["Our whole department has this problem.", "Everyone on the 2nd floor is affected.", "Many users see it."],
    2: ["A few people in my team have it.", "My team of 5 is affected.", "Two colleagues have the same issue."],
    3: ["Only me so far.", "It is just my machine.", ""],
}
IMPACT_SUMMARY = {0: "company-wide", 1: "for a department", 2: "for a team", 3: "for one user"}
PROBLEMS = [
    "I have a problem with {kw}.",
    "{Kw} is not working since this morning.",
    "Since yesterday {kw} keeps failing.",
    "Can someone help me with {kw}?",
    "We need help: {kw}.",
    "Issue with {kw} again, same as last week.",
    "Request regarding {kw}.",
]
FOREIGN = {
    "de": ["Ich habe ein Problem mit {kw}.", "{Kw} funktioniert seit heute Morgen nicht.", "Bitte um Hilfe: {kw}."],
    "fr": ["J'ai un problème avec {kw}.", "{Kw} ne fonctionne plus depuis ce matin.", "Besoin d'aide : {kw}."],
    "es": ["Tengo un problema con {kw}.", "{Kw} no funciona desde esta mañana.", "Necesito ayuda: {kw}."],
}
APP_MENTIONS = ["It happens in {app}.", "This is about {app}.", "({app})", "Using {app}."]
GREETINGS = ["", "Hi,\n", "Hello team,\n", "Dear IT,\n", "Good morning,\n"]
SIGNATURES = [
    "",
    "\nThanks",
    "\nBest regards,\nAnna Schmidt\nFinance | ext. 4412",
    "\nCheers, Tom\nSent from my iPhone",
]
FORWARD = "\n\n-----Original Message-----\nFrom: helpdesk@example.com\nSent: Monday 09:12\nSubject: RE: ticket\n"


class SyntheticTicket(Ticket):
    """A labelled ticket; validated against the taxonomy like any answer (context={"taxonomy": ...})."""

    id: str
    text: str
    language: str


PLACEHOLDER_APPLICATIONS = {"not applicable", "none", "n/a", "other"}


def _mentions(application: Label) -> bool:
    return application.name.casefold() not in PLACEHOLDER_APPLICATIONS


def _keyword(label: Label, rng: random.Random) -> str:
    return rng.choice(label.keywords) if label.keywords else label.name.lower()


def _typos(text: str, rng: random.Random, rate: float) -> str:
    chars = list(text)
    for i in range(len(chars) - 1):
        if chars[i].isalpha() and chars[i + 1].isalpha() and rng.random() < rate:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def _scale_index(labels: tuple[Label, ...], index: int) -> int:
    """Map a position on the taxonomy's scale onto the 4 cue levels (most severe first)."""
    return min(3, round(index * 3 / max(1, len(labels) - 1)))


def generate(taxonomy: Taxonomy, n: int, seed: int = 0, foreign_share: float = 0.1) -> Iterator[SyntheticTicket]:
    """`n` labelled tickets; a taxonomy it cannot write for is refused here, before the first one."""
    missing = [field for field in LABEL_FIELDS if field not in taxonomy.fields]
    if missing:  # it writes tickets from subcategory keywords and severity cues: it needs every field
        raise ConfigError(
            f"data synth needs a taxonomy that defines every field; '{taxonomy.name}' lacks {', '.join(missing)}"
        )
    return _generate(taxonomy, n, seed, foreign_share)


def _generate(taxonomy: Taxonomy, n: int, seed: int, foreign_share: float) -> Iterator[SyntheticTicket]:
    rng = random.Random(seed)
    subcategories = [(c, s) for c in taxonomy.categories for s in c.subcategories]
    severities = list(itertools.product(range(len(taxonomy.urgency)), range(len(taxonomy.impact))))
    rng.shuffle(subcategories)
    rng.shuffle(severities)
    groups = taxonomy.choices("assignment_group")
    for i in range(n):
        category, sub = subcategories[i % len(subcategories)]
        u, m = severities[i % len(severities)]
        application = taxonomy.applications[rng.randrange(len(taxonomy.applications))]
        keyword = _keyword(sub, rng)
        language = rng.choice(list(FOREIGN)) if rng.random() < foreign_share else "en"
        templates = PROBLEMS if language == "en" else FOREIGN[language]
        parts = [rng.choice(templates).format(kw=keyword, Kw=keyword[:1].upper() + keyword[1:])]
        if _mentions(application):
            parts.append(rng.choice(APP_MENTIONS).format(app=application.name))
        parts.append(rng.choice(URGENCY_CUES[_scale_index(taxonomy.urgency, u)]))
        parts.append(rng.choice(IMPACT_CUES[_scale_index(taxonomy.impact, m)]))
        body = " ".join(p for p in parts if p)
        text = (
            rng.choice(GREETINGS) + _typos(body, rng, rate=rng.choice([0.0, 0.0, 0.02, 0.05])) + rng.choice(SIGNATURES)
        )
        if rng.random() < 0.1:
            text += FORWARD + "Previous message about an older issue, already closed."
        app_part = f" in {application.name}" if _mentions(application) else ""
        summary = f"{sub.name} issue{app_part}: {keyword} {IMPACT_SUMMARY[_scale_index(taxonomy.impact, m)]}"
        ticket = {
            "id": f"syn-{seed}-{i:06d}",
            "text": text,
            "summary": summary[:SUMMARY_MAX_CHARS],
            "category": category.name,
            "subcategory": sub.name,
            "application": application.name,
            "urgency": taxonomy.urgency[u].name,
            "impact": taxonomy.impact[m].name,
            "assignment_group": category.default_group or rng.choice(groups),
            "language": language,
        }
        yield SyntheticTicket.model_validate(ticket, context={"taxonomy": taxonomy})
