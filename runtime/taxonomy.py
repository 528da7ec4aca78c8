"""The label taxonomy: categories with their subcategories, applications, urgency, impact, groups."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ticketsmith.runtime.yaml_config import validate_yaml

LabelField = Literal["category", "subcategory", "application", "urgency", "impact", "assignment_group"]
LABEL_FIELDS: tuple[LabelField, ...] = (
    "category",
    "subcategory",
    "application",
    "urgency",
    "impact",
    "assignment_group",
)

# Labels go verbatim between JSON quotes in prompts, answers and grammars: keep them plain.
LabelName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=80, pattern=r'^[^\s"\\\x00-\x1f\x7f](?:[^"\\\x00-\x1f\x7f]*[^\s"\\\x00-\x1f\x7f])?$'
    ),
]


class Label(BaseModel):
    """One label; a plain string in YAML is shorthand for `{name: ...}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: LabelName
    description: str = ""
    keywords: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_plain_string(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class Category(Label):
    subcategories: Annotated[tuple[Label, ...], Field(min_length=1)]
    default_group: str | None = None

    @model_validator(mode="after")
    def _unique_subcategories(self) -> "Category":
        _require_unique(self.subcategories, f"subcategories of '{self.name}'")
        return self


def _require_unique(labels: Iterable[Label], what: str) -> None:
    seen: set[str] = set()
    for label in labels:
        key = label.name.casefold()
        if key in seen:
            raise ValueError(f"duplicate label '{label.name}' in {what}; each label must appear once")
        seen.add(key)


class Taxonomy(BaseModel):
    """The closed label sets the model may answer with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    version: int = 1
    categories: Annotated[tuple[Category, ...], Field(min_length=1)]
    applications: Annotated[tuple[Label, ...], Field(min_length=1)]
    urgency: Annotated[tuple[Label, ...], Field(min_length=1)]
    impact: Annotated[tuple[Label, ...], Field(min_length=1)]
    assignment_groups: Annotated[tuple[Label, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_consistency(self) -> "Taxonomy":
        for what in ("categories", "applications", "urgency", "impact", "assignment_groups"):
            _require_unique(getattr(self, what), what)
        groups = {g.name for g in self.assignment_groups}
        for category in self.categories:
            if category.default_group is not None and category.default_group not in groups:
                raise ValueError(
                    f"category '{category.name}' has default_group '{category.default_group}', which is "
                    f"not in assignment_groups; add it there or use one of: {', '.join(sorted(groups))}"
                )
        return self

    def category(self, name: str) -> Category:
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(name)

    def choices(self, field: LabelField, category: str | None = None) -> tuple[str, ...]:
        """The allowed labels of `field`; subcategories need the chosen category."""
        if field == "subcategory":
            if category is None:
                raise ValueError("subcategory choices depend on the category")
            return tuple(s.name for s in self.category(category).subcategories)
        labels: tuple[Label, ...] = {
            "category": self.categories,
            "application": self.applications,
            "urgency": self.urgency,
            "impact": self.impact,
            "assignment_group": self.assignment_groups,
        }[field]
        return tuple(label.name for label in labels)

    def fingerprint(self) -> str:
        """A stable hash of the label sets: a model is only valid for the taxonomy it was trained on."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_taxonomy(path: Path) -> Taxonomy:
    return validate_yaml(path, Taxonomy)
