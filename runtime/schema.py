"""Pydantic models of the triage output and the JSON Schema that `ticketsmith schema` prints."""

import copy
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Taxonomy

SUMMARY_MAX_CHARS = 200
# Tokens the decoder lets a summary run to (and training cuts its targets to): a one-sentence
# summary of the synthetic data is 13 tokens at the median and 19 at most.
SUMMARY_MAX_TOKENS = 24


def _without_undefined_labels(data: dict[str, Any]) -> dict[str, Any]:
    """A taxonomy may define only some label fields: the others are left out of the output, not null."""
    return {key: value for key, value in data.items() if key not in LABEL_FIELDS or value is not None}


class Ticket(BaseModel):
    """The structured ticket: the summary and the label fields the taxonomy defines. Labels are
    checked against the taxonomy passed as validation context:
    `Ticket.model_validate(data, context={"taxonomy": taxonomy})`."""

    model_config = ConfigDict(extra="forbid")

    summary: Annotated[str, Field(min_length=1, max_length=SUMMARY_MAX_CHARS)]
    category: str | None = None
    subcategory: str | None = None
    application: str | None = None
    urgency: str | None = None
    impact: str | None = None
    assignment_group: str | None = None

    @field_validator("summary")
    @classmethod
    def _encodable(cls, value: str) -> str:
        value.encode("utf-8")  # rejects lone surrogates, which no JSON writer can emit as UTF-8
        return value

    @model_validator(mode="after")
    def _labels_from_taxonomy(self, info: ValidationInfo) -> "Ticket":
        taxonomy = (info.context or {}).get("taxonomy")
        if not isinstance(taxonomy, Taxonomy):
            raise ValueError("a Ticket is validated against a taxonomy: pass context={'taxonomy': ...}")
        for field in LABEL_FIELDS:
            value = getattr(self, field)
            if field not in taxonomy.fields:
                if value is not None:
                    raise ValueError(f"{field}: the taxonomy '{taxonomy.name}' does not define this field")
                continue
            allowed = taxonomy.choices(field, self.category if field == "subcategory" else None)
            if value not in allowed:
                raise ValueError(f"{field} '{value}' is not one of the taxonomy's labels: {', '.join(allowed)}")
        return self

    @model_serializer(mode="wrap")
    def _defined_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_undefined_labels(handler(self))


class FieldConfidence(BaseModel):
    """Per-field confidence in [0, 1], from the model's token probabilities (see docs/decoding.md)."""

    model_config = ConfigDict(extra="forbid")

    summary: Annotated[float, Field(ge=0, le=1)]
    category: Annotated[float, Field(ge=0, le=1)] | None = None
    subcategory: Annotated[float, Field(ge=0, le=1)] | None = None
    application: Annotated[float, Field(ge=0, le=1)] | None = None
    urgency: Annotated[float, Field(ge=0, le=1)] | None = None
    impact: Annotated[float, Field(ge=0, le=1)] | None = None
    assignment_group: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_serializer(mode="wrap")
    def _defined_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_undefined_labels(handler(self))


class TriageResult(Ticket):
    """One output line of `ticketsmith triage`: the ticket plus how sure the model was."""

    id: str | int | None = None
    confidence: FieldConfidence
    overall_confidence: Annotated[float, Field(ge=0, le=1)]
    needs_review: bool
    review_fields: list[str] = Field(description="fields whose confidence is under their threshold")
    review_reason: str | None = Field(None, description="why the whole ticket needs review, beyond its fields")
    untrained_fields: list[str] = Field(
        default_factory=list, description="fields no trained part predicts: the base model's guesses, never accepted"
    )
    truncated: bool = Field(description="the text was cut to fit the model's context")
    input_tokens: Annotated[int, Field(ge=0)] = Field(description="tokens of ticket text the model read")


class TriageError(BaseModel):
    """The output line for an input that could not be triaged; the batch goes on."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
    line: int | None = None
    error: str


def result_json_schema(taxonomy: Taxonomy) -> dict[str, Any]:
    """The JSON Schema of a triage result, with the taxonomy's labels as enums and the subcategory
    constrained by the category (one if/then per category)."""
    schema = copy.deepcopy(TriageResult.model_json_schema())
    schema["title"] = f"ticketsmith triage result ({taxonomy.name})"
    props = schema["properties"]
    confidence = schema["$defs"]["FieldConfidence"]["properties"]
    for field in LABEL_FIELDS:
        if field not in taxonomy.fields:
            del props[field], confidence[field]
            continue
        confidence[field] = {"type": "number", "minimum": 0, "maximum": 1, "title": confidence[field]["title"]}
        if field == "subcategory":
            labels = sorted({s.name for c in taxonomy.categories for s in c.subcategories})
        else:
            labels = list(taxonomy.choices(field))
        props[field] = {"type": "string", "enum": labels, "title": props[field].get("title", field)}
    schema["required"] = [*schema.get("required", []), *taxonomy.fields]
    schema["$defs"]["FieldConfidence"]["required"] = ["summary", *taxonomy.fields]
    if "subcategory" in taxonomy.fields:
        schema["allOf"] = [
            {
                "if": {"properties": {"category": {"const": c.name}}, "required": ["category"]},
                "then": {"properties": {"subcategory": {"enum": [s.name for s in c.subcategories]}}},
            }
            for c in taxonomy.categories
        ]
    schema["additionalProperties"] = False
    return schema


# Called after every triage with its wall time in seconds and its result (None when it failed): how the
# HTTP side's /metrics sees tickets that workers and the HTTP endpoint triage alike.
TriageObserver = Callable[[float, TriageResult | None], None]
