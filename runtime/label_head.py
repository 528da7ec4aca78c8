"""The label head: a linear classifier per labelled field over word and character n-grams of the
ticket, fused with the LLM's grammar-constrained label probabilities at each label decision.

A 135M model fine-tuned on a CPU lands far below TF-IDF on the same tickets (bench/REAL_DATA.md);
a linear head fitted in a minute gives the right label far more often and calibrates well. The
artifact is two plain files, never a pickle: `head.json` (format version, the taxonomy fingerprint
and data hash it was fitted for, the n-gram vocabulary, classes, fusion weights and review
thresholds) and `head.npz` (idf and coefficients, read with `allow_pickle=False`). Scoring needs
numpy only: the features come from `ticket_features`, which training hands to scikit-learn as its
analyzer, so the two sides count the same n-grams by construction."""

import json
import math
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, LabelField, Taxonomy
from ticketsmith.runtime.text_hygiene import keep_ends

HEAD_FORMAT = "ticketsmith-label-head"
HEAD_VERSION = 2  # 2: word and character blocks L2-normalised apart; 1 (still read): one norm for both
HEAD_JSON = "head.json"
HEAD_ARRAYS = "head.npz"
FEATURE_CHARS = 20_000  # a ticket's first characters that the head reads: a huge paste adds nothing
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
# Characters per token of SmolLM2's tokenizer on ticket text (bench/NOTES.md, "Ticket token budget"):
# the head, which has no tokenizer, reads a window of the ticket token budget in characters.
HEAD_CHARS_PER_TOKEN = 4
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SPACE = re.compile(r"\s\s+")
PAIR_SEPARATOR = "\x1f"  # subcategory classes are `category<US>subcategory`: names repeat across categories


def ticket_features(text: str) -> list[str]:
    """The n-grams the head counts: words and word pairs (`w:`), and character 2-5-grams inside
    space-padded words (`c:`), as scikit-learn's `char_wb` analyzer makes them, of lower-cased text."""
    text = _SPACE.sub(" ", text[:FEATURE_CHARS].lower())
    words = _WORD.findall(text)
    features = []
    for n in range(WORD_NGRAMS[0], WORD_NGRAMS[1] + 1):
        features += ["w:" + " ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    for word in text.split():
        padded = f" {word} "
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            features += ["c:" + padded[i : i + n] for i in range(max(1, len(padded) - n + 1))]
            if len(padded) <= n:  # a word no longer than n counts once, whole
                break
    return features


def head_window(text: str, ticket_tokens: int | None) -> str:
    """The part of a ticket the head reads: the start and end the LLM's ticket token budget keeps,
    counted in characters. A head from before the budget (None) reads its first FEATURE_CHARS."""
    return text if ticket_tokens is None else keep_ends(text, ticket_tokens * HEAD_CHARS_PER_TOKEN)


def word_block_mask(vocabulary: list[str]) -> npt.NDArray[np.bool_]:
    """True for the word n-grams of a vocabulary, False for the character n-grams. Each block is
    normalised on its own: in one norm the character n-grams, ten times as many, drown the words
    (5-fold CV on the shared training tickets: 81.4% -> 82.6% on 2,000, 85.1% -> 85.7% on 12,000)."""
    return np.fromiter((feature.startswith("w:") for feature in vocabulary), dtype=bool, count=len(vocabulary))


def pair_class(category: str, subcategory: str) -> str:
    return category + PAIR_SEPARATOR + subcategory


class FieldHead(BaseModel):
    """One field's classifier: its classes (rows of `coef_<field>`) and how its scores are turned
    into a calibrated distribution and fused with the LLM's."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str]
    head_weight: Annotated[float, Field(ge=0)] = Field(description="multiplies the head's margins (1/temperature)")
    llm_weight: Annotated[float, Field(ge=0)] = Field(description="multiplies the LLM's label log-probabilities")
    review_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        description="the fused confidence under which the field goes to review (from the target precision)"
    )
    fitted_on: str = Field(description="which predictions the weights and threshold were fitted on")


class HeadManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    version: int
    taxonomy_fingerprint: str
    data_sha256: str
    examples: int
    target_precision: float
    fields: dict[LabelField, FieldHead]
    vocabulary: list[str]
    ticket_tokens: int | None = Field(
        default=None, description="the ticket token budget whose window the head was fitted and is served on"
    )
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    created: str
    ticketsmith_version: str


class LabelHead:
    """A loaded head: `log_probs(text, field)` gives the head's calibrated label log-probabilities."""

    def __init__(self, folder: Path, taxonomy: Taxonomy) -> None:
        self.folder = folder
        manifest_file, arrays_file = folder / HEAD_JSON, folder / HEAD_ARRAYS
        fix = "retrain it with `ticketsmith train --head-only` or point --model at another run"
        try:
            self.manifest = HeadManifest.model_validate_json(manifest_file.read_text(encoding="utf-8"))
            if self.manifest.format != HEAD_FORMAT or self.manifest.version not in (1, HEAD_VERSION):
                raise ValueError(
                    f"format {self.manifest.format} v{self.manifest.version}, not {HEAD_FORMAT} v1 or v{HEAD_VERSION}"
                )
            with np.load(arrays_file, allow_pickle=False) as arrays:
                self._idf = np.asarray(arrays["idf"], dtype=np.float64)
                self._coef = {f: np.asarray(arrays[f"coef_{f}"], dtype=np.float64) for f in self.manifest.fields}
                self._intercept = {f: np.asarray(arrays[f"intercept_{f}"]) for f in self.manifest.fields}
        except (OSError, ValueError, KeyError, ValidationError, EOFError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"label head {folder} is missing, corrupt or truncated ({reason}): {fix}") from None
        vocabulary = self.manifest.vocabulary
        if self._idf.shape != (len(vocabulary),) or any(
            self._coef[f].shape != (len(h.classes), len(vocabulary)) or self._intercept[f].shape != (len(h.classes),)
            for f, h in self.manifest.fields.items()
        ):
            raise ModelError(f"label head {folder}: its arrays do not match its vocabulary and classes: {fix}")
        if self.manifest.taxonomy_fingerprint != taxonomy.fingerprint():
            raise ModelError(
                f"label head {folder} was fitted for taxonomy {self.manifest.taxonomy_fingerprint}, but the "
                f"configured taxonomy is {taxonomy.fingerprint()}: serve it with the taxonomy it was trained with "
                "(taxonomy.yaml in the run folder), or retrain"
            )
        self._index = {feature: i for i, feature in enumerate(vocabulary)}
        self._blocks = word_block_mask(vocabulary) if self.manifest.version >= 2 else None
        self.fields: dict[LabelField, FieldHead] = dict(self.manifest.fields)
        self._class_index = {f: {c: i for i, c in enumerate(h.classes)} for f, h in self.fields.items()}

    def features(self, text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ticket's TF-IDF row as (column indices, values): sublinear tf and idf as scikit-learn's
        TfidfVectorizer(sublinear_tf=True) computes them for the training tickets, then the word
        block and the character block each L2-normalised (train/label_head.BlockTfidf)."""
        counts = Counter(i for i in map(self._index.get, ticket_features(text)) if i is not None)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
        values = tf * self._idf[columns]
        if self._blocks is None:
            return columns, values / np.linalg.norm(values)
        words = self._blocks[columns]
        for block in (words, ~words):
            if block.any():
                values[block] /= np.linalg.norm(values[block])
        return columns, values

    def margins(self, text: str) -> dict[LabelField, npt.NDArray[np.float64]]:
        """Each field's raw linear scores, one per class."""
        columns, values = self.features(head_window(text, self.manifest.ticket_tokens))
        return {f: self._coef[f][:, columns] @ values + self._intercept[f] for f in self.fields}

    def predict(self, text: str) -> dict[LabelField, str]:
        """The head's own label for each field it scores (the subcategory among its category's, when
        it scores both): what it would answer without the LLM, for measurements."""
        margins = self.margins(text)
        guess: dict[LabelField, str] = {}
        for field, spec in self.fields.items():
            if field != "subcategory":
                guess[field] = spec.classes[int(margins[field].argmax())]
        category = guess.get("category")
        if "subcategory" in self.fields:
            classes = self.fields["subcategory"].classes
            allowed = [i for i, c in enumerate(classes) if category is None or c.startswith(category + PAIR_SEPARATOR)]
            best = max(allowed or range(len(classes)), key=lambda i: margins["subcategory"][i])
            guess["subcategory"] = classes[best].split(PAIR_SEPARATOR)[-1]
        return guess

    def label_margins(
        self, field: LabelField, margins: npt.NDArray[np.float64], labels: tuple[str, ...], category: str | None
    ) -> npt.NDArray[np.float64]:
        """`field`'s margins in the order of `labels` (a subcategory's: of `category`'s pairs); a
        label the head never saw in training gets less than its lowest, so only the LLM can pick it."""
        position = self._class_index[field]
        keys = [pair_class(category, label) if category is not None else label for label in labels]
        floor = float(margins.min()) - 1.0
        return np.array([margins[position[k]] if k in position else floor for k in keys])


def head_taxonomy(folder: Path) -> str | None:
    """The taxonomy fingerprint a head folder was fitted for, read without loading its arrays."""
    try:
        value = json.loads((folder / HEAD_JSON).read_text(encoding="utf-8")).get("taxonomy_fingerprint")
    except (OSError, ValueError):
        return None  # unreadable: LabelHead says how
    return value if isinstance(value, str) else None


def head_fields(folder: Path) -> list[str]:
    """The fields a head folder scores, read without loading its arrays (for messages and `doctor`)."""
    data = json.loads((folder / HEAD_JSON).read_text(encoding="utf-8"))
    return [f for f in data.get("fields", {}) if f in LABEL_FIELDS]
