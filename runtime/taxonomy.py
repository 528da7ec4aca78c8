"""The label taxonomy: categories with their subcategories, applications, urgency, impact, groups.

A taxonomy may define only some of these fields (an export labelled with an assignment group alone
serves the summary and the group). Every list of fields elsewhere asks `Taxonomy.fields`."""

import hashlib
import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

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
# The YAML key of each field's label set; the subcategories live inside their categories.
LABEL_SET_KEYS: dict[LabelField, str] = {
    "category": "categories",
    "application": "applications",
    "urgency": "urgency",
    "impact": "impact",
    "assignment_group": "assignment_groups",
}

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
    subcategories: tuple[Label, ...] = ()
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
    categories: tuple[Category, ...] = ()
    applications: tuple[Label, ...] = ()
    urgency: tuple[Label, ...] = ()
    impact: tuple[Label, ...] = ()
    assignment_groups: tuple[Label, ...] = ()

    @model_validator(mode="after")
    def _check_consistency(self) -> "Taxonomy":
        for what in LABEL_SET_KEYS.values():
            _require_unique(getattr(self, what), what)
        if not any(getattr(self, what) for what in LABEL_SET_KEYS.values()):
            raise ValueError(f"a taxonomy defines at least one of: {', '.join(LABEL_SET_KEYS.values())}")
        with_subcategories = [c.name for c in self.categories if c.subcategories]
        if with_subcategories and len(with_subcategories) < len(self.categories):
            bare = next(c.name for c in self.categories if not c.subcategories)
            raise ValueError(
                f"category '{bare}' has no subcategories but others do; give every category subcategories or none"
            )
        groups = {g.name for g in self.assignment_groups}
        for category in self.categories:
            if category.default_group is not None and category.default_group not in groups:
                raise ValueError(
                    f"category '{category.name}' has default_group '{category.default_group}', which is "
                    f"not in assignment_groups; add it there or use one of: {', '.join(sorted(groups))}"
                )
        return self

    @cached_property
    def fields(self) -> tuple[LabelField, ...]:
        """The label fields this taxonomy defines, in answer order; the subcategory only where the
        categories have subcategories. Cached: the taxonomy is frozen, and every label check asks."""
        defined = {field for field, key in LABEL_SET_KEYS.items() if getattr(self, key)}
        if self.categories and self.categories[0].subcategories:
            defined.add("subcategory")
        return tuple(field for field in LABEL_FIELDS if field in defined)

    def category(self, name: str) -> Category:
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(name)

    def choices(self, field: LabelField, category: str | None = None) -> tuple[str, ...]:
        """The allowed labels of `field`; subcategories need the chosen category."""
        if field not in self.fields:
            raise ValueError(f"the taxonomy '{self.name}' does not define {field}")
        if field == "subcategory":
            if category is None:
                raise ValueError("subcategory choices depend on the category")
            return tuple(s.name for s in self.category(category).subcategories)
        labels: tuple[Label, ...] = getattr(self, LABEL_SET_KEYS[field])
        return tuple(label.name for label in labels)

    def fingerprint(self) -> str:
        """A stable hash of the label sets: a model is only valid for the taxonomy it was trained on."""
        # label sets it leaves out are left out of the hash too, so a full taxonomy hashes as it always has
        data = self.model_dump(mode="json")
        data = {key: value for key, value in data.items() if value != [] or key not in LABEL_SET_KEYS.values()}
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_taxonomy(path: Path) -> Taxonomy:
    return validate_yaml(path, Taxonomy)
