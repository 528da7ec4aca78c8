"""How a synthetic ticket is written around its sentences: a mail, a chat one-liner, a web form,
or a forwarded alert, with the noise of real inboxes (styles.yaml).

The sentences that carry labels (urgency and impact cues, an application named for a taxonomy
without "Not Applicable") are kept verbatim: typos and non-native rewrites touch only the
user's own description of the problem, so a cue always reads as the label it was added with."""

import random
from dataclasses import dataclass

from ticketsmith.train.synth_bank import Language, Styles

KINDS = ("mail", "chat", "form")
KIND_WEIGHTS = (0.5, 0.3, 0.2)
NONNATIVE_SHARE = 0.15
TYPO_RATES = (0.0, 0.0, 0.0, 0.0, 0.005, 0.01, 0.02)
PHONE_TYPO_RATE = 0.02
GREETING_SHARE = 0.85
SIGNATURE_LINE_SHARE = 0.5
PHONE_SHARE = 0.15
DISCLAIMER_SHARE = 0.15
QUOTED_SHARE = 0.15


@dataclass(frozen=True)
class Written:
    text: str
    style: str  # mail, chat, form, alert or forwarded-alert, with "+nonnative" where rewritten


def typos(text: str, rng: random.Random, rate: float) -> str:
    """Swap adjacent letters at `rate`: the slips of fast typing, never across words."""
    chars = list(text)
    for i in range(len(chars) - 1):
        if chars[i].isalpha() and chars[i + 1].isalpha() and rng.random() < rate:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def nonnative(text: str, styles: Styles, rng: random.Random) -> str:
    """Each matching rewrite with probability one half: a writer has some of the habits, not all."""
    for rewrite in styles.nonnative.rewrites:
        if rewrite.pattern.search(text) and rng.random() < 0.5:
            text = rewrite.pattern.sub(rewrite.replace, text)
    return text


def _sentence(text: str) -> str:
    return text if text[-1] in ".!?:)" else text + "."


def _signature(styles: Styles, language: Language, rng: random.Random, phone: bool) -> str:
    lines = [rng.choice(styles.signoffs.of(language)), rng.choice(styles.names)]
    if rng.random() < SIGNATURE_LINE_SHARE and not phone:
        lines.append(rng.choice(styles.signature_lines.of(language)))
    if phone:
        lines = [*lines[: rng.randrange(3)], "", rng.choice(styles.phone_footers.of(language))]
    return "\n".join(lines).strip()


def _header(styles: Styles, language: Language, rng: random.Random, sender: str, subject: str) -> str:
    header = rng.choice(styles.forward_headers.of(language))
    return header.format(sender=sender, date=rng.choice(styles.dates.of(language)), subject=subject)


def _quoted(styles: Styles, language: Language, rng: random.Random) -> str:
    """An earlier message of the thread under the body; it says nothing about the problem."""
    header = _header(styles, language, rng, rng.choice(styles.senders), rng.choice(styles.subjects.of(language)))
    reply = rng.choice(styles.quoted_replies.of(language))
    if rng.random() < 0.5:
        reply = "\n".join("> " + line for line in reply.splitlines())
    return header + "\n\n" + reply


def _mail(sentences: list[str], styles: Styles, language: Language, rng: random.Random, phone: bool) -> str:
    parts = []
    if rng.random() < GREETING_SHARE:
        parts.append(rng.choice(styles.greetings.of(language)))
    parts.append(" ".join(_sentence(s) for s in sentences))
    parts.append(_signature(styles, language, rng, phone))
    if rng.random() < DISCLAIMER_SHARE:
        parts.append(rng.choice(styles.disclaimers.of(language)))
    if rng.random() < QUOTED_SHARE:
        parts.append(_quoted(styles, language, rng))
    return "\n\n".join(part for part in parts if part)


def _chat(sentences: list[str], styles: Styles, language: Language, rng: random.Random) -> str:
    """One lower-case line: sentences run together with a comma or a dash, the last full stop dropped."""
    joiner = rng.choice((". ", ", ", " - "))
    line = joiner.join(" ".join(s.split()).rstrip(".") for s in sentences).lower()
    return (rng.choice(styles.chat_openers.of(language)) + line + rng.choice(styles.chat_closers.of(language))).strip()


def write(problem: list[str], labelled: list[str], language: Language, styles: Styles, rng: random.Random) -> Written:
    """A ticket from the user's `problem` sentences and the `labelled` ones (cues, kept verbatim)."""
    rewritten = language == "en" and rng.random() < NONNATIVE_SHARE
    if rewritten:
        problem = [nonnative(s, styles, rng) for s in problem]
    kind = rng.choices(KINDS, weights=KIND_WEIGHTS)[0]
    phone = kind == "mail" and rng.random() < PHONE_SHARE
    rate = rng.choice(TYPO_RATES) + (PHONE_TYPO_RATE if phone else 0.0)
    problem = [typos(s, rng, rate) for s in problem]
    labelled = list(labelled)
    rng.shuffle(labelled)
    sentences = [*problem, *labelled]
    if rewritten and kind != "chat" and rng.random() < 0.5:
        sentences.append(rng.choice(styles.nonnative.closings))
    suffix = "+nonnative" if rewritten else ""
    if kind == "chat":
        return Written(_chat(sentences, styles, language, rng), "chat" + suffix)
    if kind == "form":
        return Written(" ".join(_sentence(s) for s in sentences), "form" + suffix)
    return Written(_mail(sentences, styles, language, rng, phone), "mail" + suffix)


def write_alert(
    alert: str, labelled: list[str], language: Language, styles: Styles, rng: random.Random, forwarded: bool
) -> Written:
    """A machine-written alert as it arrived (no cues: nobody wrote any), or forwarded by a person
    who may add them."""
    if not forwarded:
        return Written(alert, "alert")
    intro = " ".join([*labelled, rng.choice(styles.alert_intros.of(language))])  # the intro leads to the alert
    header = _header(styles, language, rng, rng.choice(styles.alert_senders), alert.splitlines()[0][:70])
    parts = [intro, header, alert]
    if rng.random() < 0.5:
        parts.insert(1, rng.choice(styles.names))
    return Written("\n\n".join(parts), "forwarded-alert")
