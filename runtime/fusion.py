"""Fusion of the LLM's and the label head's views of one label decision.

fused log p(label) = log_softmax(llm_weight x LLM log p(label | grammar) + head_weight x head margin),
with both weights fitted by log loss on predictions neither part was trained on (train/label_head.py).
The fused distribution is the field's confidence. For a subcategory the head's margins are those of
the chosen category's (category, subcategory) pairs, so the subcategory stays the category's."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ticketsmith.runtime.label_head import LabelHead
from ticketsmith.runtime.taxonomy import LabelField


def log_softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Over the last axis: one decision's labels, or each row of a batch of them."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)), dtype=np.float64)


@dataclass(frozen=True)
class FieldPrior:
    """The head's view of one decision over a fixed list of labels."""

    head_log_probs: npt.NDArray[np.float64]  # the head alone, calibrated, over these labels
    head_term: npt.NDArray[np.float64]  # head_weight x margins, added to the LLM's weighted log-probs
    llm_weight: float

    def fuse(self, llm_log_probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return log_softmax(self.llm_weight * llm_log_probs + self.head_term)


@dataclass(frozen=True)
class FieldParts:
    """One field's decision seen three ways, for `eval`: labels and log-probabilities."""

    labels: tuple[str, ...]
    llm: npt.NDArray[np.float64]
    head: npt.NDArray[np.float64] | None
    fused: npt.NDArray[np.float64]


class TicketPriors:
    """The head's margins for one ticket, turned into a prior for each decision the decoder meets."""

    def __init__(self, head: LabelHead, text: str) -> None:
        self._head = head
        self._margins = head.margins(text)

    def prior(self, field: LabelField, labels: tuple[str, ...], category: str | None) -> FieldPrior | None:
        spec = self._head.fields.get(field)
        if spec is None:
            return None
        pairs_of = category if field == "subcategory" else None
        margins = self._head.label_margins(field, self._margins[field], labels, pairs_of)
        term = spec.head_weight * margins
        return FieldPrior(log_softmax(term), term, spec.llm_weight)
