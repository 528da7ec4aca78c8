"""The hand-written scenario bank of `data synth` (train/bank/, docs/synth-bank.md), loaded and validated.

The bank is package data of `ticketsmith.train`, read through importlib.resources so that a wheel
carries it; tests point `load_bank` at a folder of their own. Loading checks what the bank alone
can check (shape, the urgency and impact levels against styles.yaml, templates); `check_bank`
checks every name against a taxonomy, which the bank must match exactly for the default one."""

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo, model_validator

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.yaml_config import describe_error, format_location, read_yaml

Language = Literal["en", "fr", "de"]
ScaleField = Literal["urgency", "impact"]
# Each scale field with the key of a scenario's alternative levels.
SCALE_FIELDS: tuple[tuple[ScaleField, str], ...] = (("urgency", "urgencies"), ("impact", "impacts"))
LANGUAGES: tuple[Language, ...] = ("en", "fr", "de")
STYLES_FILE = "styles.yaml"
SUMMARY_MAX = 80
# Application names that mean "no application": a scenario's default, and how taxonomies spell it.
PLACEHOLDER_APPLICATIONS = frozenset({"not applicable", "none", "n/a", "other"})

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Texts = Annotated[tuple[Text, ...], Field(min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _fields_of(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _check_templates(texts: Iterator[str], allowed: set[str], what: str) -> None:
    """A template names only the fields the generator fills in: a typo would reach the text as `{x}`."""
    for text in texts:
        try:
            unknown = _fields_of(text) - allowed
        except ValueError as exc:
            raise ValueError(f"{what}: '{text}' is not a valid template ({exc}); write braces as {{{{ }}}}") from None
        if unknown:
            names = ", ".join("{" + name + "}" for name in sorted(allowed)) or "none"
            raise ValueError(f"{what}: '{text}' uses {{{sorted(unknown)[0]}}}; the placeholders here are: {names}")


class PerLanguage(_Frozen):
    """The same list in English, French and German."""

    en: tuple[str, ...] = Field(min_length=1)
    fr: tuple[str, ...] = Field(min_length=1)
    de: tuple[str, ...] = Field(min_length=1)

    def of(self, language: Language) -> tuple[str, ...]:
        texts: tuple[str, ...] = getattr(self, language)
        return texts

    def all(self) -> Iterator[str]:
        for language in LANGUAGES:
            yield from self.of(language)


class Rewrite(_Frozen):
    """One non-native English habit: a regular expression (case-insensitive) and its replacement."""

    find: Annotated[str, StringConstraints(min_length=1)]  # not stripped: a pattern may end in a space
    replace: str

    @model_validator(mode="after")
    def _compiles(self) -> "Rewrite":
        try:
            self.pattern.sub(self.replace, "")
        except re.error as exc:
            raise ValueError(
                f"'{self.find}' -> '{self.replace}' is not a valid regular expression rewrite: {exc}"
            ) from None
        return self

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.find, re.IGNORECASE)


class NonNative(_Frozen):
    rewrites: tuple[Rewrite, ...] = Field(min_length=1)
    closings: Texts


class Fallback(_Frozen):
    """Text for a subcategory that has keywords in the taxonomy but no scenarios in the bank."""

    phrasings: PerLanguage
    summaries: Texts
    application_mentions: PerLanguage

    @model_validator(mode="after")
    def _templates(self) -> "Fallback":
        keyword = {"keyword", "Keyword"}
        _check_templates(self.phrasings.all(), keyword, "fallback.phrasings")
        _check_templates(iter(self.summaries), keyword, "fallback.summaries")
        _check_templates(self.application_mentions.all(), {"application"}, "fallback.application_mentions")
        return self


Cues = dict[Text, PerLanguage]


class Styles(_Frozen):
    """styles.yaml: how people write, and the cue sentences of each urgency and impact level."""

    greetings: PerLanguage
    signoffs: PerLanguage
    names: Texts
    signature_lines: PerLanguage
    phone_footers: PerLanguage
    disclaimers: PerLanguage
    forward_headers: PerLanguage
    senders: Texts
    dates: PerLanguage
    subjects: PerLanguage
    quoted_replies: PerLanguage
    chat_openers: PerLanguage
    chat_closers: PerLanguage
    alert_intros: PerLanguage
    alert_senders: Texts
    nonnative: NonNative
    fallback: Fallback
    departments: PerLanguage
    urgency: Cues = Field(min_length=2)
    impact: Cues = Field(min_length=2)

    @model_validator(mode="after")
    def _templates(self) -> "Styles":
        _check_templates(self.forward_headers.all(), {"sender", "date", "subject"}, "forward_headers")
        for field, _ in SCALE_FIELDS:
            cues: Cues = getattr(self, field)
            for level, texts in cues.items():
                _check_templates(texts.all(), {"department"}, f"{field}.{level}")
        return self

    def scale(self, field: ScaleField) -> tuple[str, ...]:
        """The levels of `field`, most severe first: the bank's own scale."""
        return tuple(getattr(self, field))


class Scenario(_Frozen):
    """One situation a user raises, with the labels it implies as written."""

    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=SUMMARY_MAX)]
    application: Text = "Not Applicable"
    urgency: Text
    impact: Text
    urgencies: tuple[Text, ...] = ()
    impacts: tuple[Text, ...] = ()
    phrasings: Annotated[tuple[Text, ...], Field(min_length=3)]
    details: tuple[Text, ...] = ()
    fr: tuple[Text, ...] = ()
    de: tuple[Text, ...] = ()
    alerts: tuple[Text, ...] = ()

    @model_validator(mode="after")
    def _levels_of_the_scale(self, info: ValidationInfo) -> "Scenario":
        scales: dict[str, tuple[str, ...]] = (info.context or {}).get("scales", {})
        for field, plural in SCALE_FIELDS:
            scale = scales.get(field)
            if scale is None:
                continue
            for level in (getattr(self, field), *getattr(self, plural)):
                if level not in scale:
                    raise ValueError(
                        f"{field} '{level}' is not a level of styles.yaml's {field} cues: {', '.join(scale)}"
                    )
        return self

    def texts(self, language: Language) -> tuple[str, ...]:
        return self.phrasings if language == "en" else self.fr if language == "fr" else self.de


class SubcategoryEntry(_Frozen):
    name: Text
    assignment_group: Text | None = None
    scenarios: Annotated[tuple[Scenario, ...], Field(min_length=1)]


class CategoryFile(_Frozen):
    """train/bank/<category-slug>.yaml: the scenarios of one category."""

    category: Text
    subcategories: Annotated[tuple[SubcategoryEntry, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> "CategoryFile":
        seen: set[str] = set()
        for entry in self.subcategories:
            if entry.name in seen:
                raise ValueError(f"subcategory '{entry.name}' appears twice; merge its scenarios into one entry")
            seen.add(entry.name)
        return self


@dataclass(frozen=True)
class Bank:
    """The styles and the category files, in file-name order (generation is reproducible)."""

    styles: Styles
    files: tuple[tuple[Path, CategoryFile], ...]

    def entry(self, category: str, subcategory: str) -> tuple[Path, int, SubcategoryEntry] | None:
        """The bank entry of a subcategory (with its file and index, to name it in messages), if any."""
        for path, bank_file in self.files:
            if bank_file.category == category:
                for index, entry in enumerate(bank_file.subcategories):
                    if entry.name == subcategory:
                        return path, index, entry
        return None


def default_bank_dir() -> Path:
    return Path(str(files("ticketsmith.train").joinpath("bank")))


def _read(path: Path) -> Any:
    """libyaml's parser where it is built (twenty times faster on the bank); any problem is read
    again by `read_yaml`, whose message names the file, the line and the fix."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return read_yaml(path)


def _validate(path: Path, model: type[_Frozen], context: dict[str, Any]) -> Any:
    data = _read(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; see docs/synth-bank.md for its format")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        lines = [describe_error(error, model) for error in exc.errors()]
        raise ConfigError(f"{path}: invalid bank file:\n" + "\n".join(lines)) from None


def load_bank(directory: Path | None = None) -> Bank:
    """The bank in `directory` (default: the packaged train/bank/); a bad file is a ConfigError
    that names the file and the entry. Cached per folder and file stamps: generators load it often."""
    folder = directory or default_bank_dir()
    if not (folder / STYLES_FILE).is_file():
        raise ConfigError(f"{folder}: no {STYLES_FILE}; the synthetic-ticket bank needs it (docs/synth-bank.md)")
    paths = sorted(p for p in folder.glob("*.yaml") if p.name != STYLES_FILE)
    stamps = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in [folder / STYLES_FILE, *paths])
    return _load(folder, stamps)


@cache
def _load(folder: Path, stamps: tuple[tuple[str, int, int], ...]) -> Bank:
    styles: Styles = _validate(folder / STYLES_FILE, Styles, {})
    context = {"scales": {"urgency": styles.scale("urgency"), "impact": styles.scale("impact")}}
    loaded: list[tuple[Path, CategoryFile]] = []
    for name, _, _ in stamps[1:]:
        path = folder / name
        bank_file: CategoryFile = _validate(path, CategoryFile, context)
        twin = next((p for p, f in loaded if f.category == bank_file.category), None)
        if twin is not None:
            raise ConfigError(
                f"{path}: category '{bank_file.category}' is also in {twin.name}; keep one file a category"
            )
        loaded.append((path, bank_file))
    return Bank(styles, tuple(loaded))


def _scenario_problems(taxonomy: Taxonomy, scenario: Scenario) -> Iterator[str]:
    applications = taxonomy.choices("application")
    if scenario.application not in applications:
        yield f"application '{scenario.application}' is not in the taxonomy's applications"
    for field, plural in SCALE_FIELDS:
        allowed = taxonomy.choices(field)
        for level in (getattr(scenario, field), *getattr(scenario, plural)):
            if level not in allowed:
                yield f"{field} '{level}' is not one of the taxonomy's: {', '.join(allowed)}"


def bank_problems(bank: Bank, taxonomy: Taxonomy) -> list[str]:
    """Every name of the bank that `taxonomy` lacks, one line each with its file and entry."""
    problems: list[str] = []
    categories = {c.name: c for c in taxonomy.categories}
    groups = set(taxonomy.choices("assignment_group"))
    for path, bank_file in bank.files:
        category = categories.get(bank_file.category)
        if category is None:
            problems.append(f"{path}: category '{bank_file.category}' is not in the taxonomy '{taxonomy.name}'")
            continue
        subcategories = {s.name for s in category.subcategories}
        for i, entry in enumerate(bank_file.subcategories):
            where = f"{path}: {format_location(('subcategories', i))} ('{entry.name}')"
            if entry.name not in subcategories:
                problems.append(f"{where}: not a subcategory of '{category.name}' in the taxonomy")
            if entry.assignment_group is not None and entry.assignment_group not in groups:
                problems.append(f"{where}: assignment_group '{entry.assignment_group}' is not in the taxonomy")
            for j, scenario in enumerate(entry.scenarios):
                place = f"{path}: {format_location(('subcategories', i, 'scenarios', j))} ('{scenario.summary}')"
                problems.extend(f"{place}: {problem}" for problem in _scenario_problems(taxonomy, scenario))
    return problems


def check_bank(bank: Bank, taxonomy: Taxonomy) -> None:
    """Refuse a bank that names labels `taxonomy` lacks: the bank is written for the default taxonomy."""
    problems = bank_problems(bank, taxonomy)
    if problems:
        shown = "\n".join(f"  {line}" for line in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ConfigError(f"the synthetic-ticket bank does not match the taxonomy '{taxonomy.name}':\n{shown}{more}")
