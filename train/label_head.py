"""Fit the label head (runtime/label_head.py) on labelled tickets: scikit-learn at train time only.

Per labelled field: a linear SVM on TF-IDF word and character n-grams, class-balanced for rare
labels, its C chosen by cross-validation on the user's own tickets. Its margins become probabilities
through one temperature fitted by log loss on out-of-fold margins (one number per field, so groups
of one or two tickets cannot break it, unlike per-class calibration), and the review threshold is
the lowest confidence at which the out-of-fold answers reach the target precision. Nothing is
fitted on the dev split: it is only measured there."""

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from joblib import Parallel, delayed
from pydantic import BaseModel
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold
from sklearn.svm import LinearSVC

from ticketsmith import __version__
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.fusion import log_softmax
from ticketsmith.runtime.label_head import (
    HEAD_ARRAYS,
    HEAD_FORMAT,
    HEAD_JSON,
    HEAD_VERSION,
    FieldHead,
    HeadManifest,
    head_window,
    pair_class,
    ticket_features,
    word_block_mask,
)
from ticketsmith.runtime.prompt import TICKET_TOKENS
from ticketsmith.runtime.taxonomy import LabelField, Taxonomy
from ticketsmith.train.metrics import FieldScores, precision_curve, score_field

log = logging.getLogger(__name__)
C_GRID = (0.05, 0.2, 1.0)
C_SEARCH_TICKETS = 6_000  # C is chosen on at most this many tickets: 9 fits stay within seconds
FOLDS = 3
MIN_DF_FROM = 1_000  # with fewer tickets an n-gram seen once is kept (min_df 1): small data needs every feature


@dataclass(frozen=True)
class FieldData:
    rows: npt.NDArray[np.int64]  # which tickets carry this field's label
    classes: list[str]
    targets: npt.NDArray[np.int64]  # index into classes, per labelled ticket


class HeadReport(BaseModel):
    """What `train --head-only` prints: per field, the chosen C and the held-out figures."""

    folder: str
    examples: int
    fit_seconds: float
    fields: dict[str, dict[str, Any]]


def labelled_fields(rows: Sequence[dict[str, Any]], taxonomy: Taxonomy) -> dict[LabelField, FieldData]:
    """The fields these tickets label with the taxonomy's labels, and their classes. Subcategories
    are learned as (category, subcategory) pairs. A field with one class only has nothing to learn."""
    out: dict[LabelField, FieldData] = {}
    for field in taxonomy.fields:
        keyed: list[tuple[int, str]] = []
        for i, row in enumerate(rows):
            value = row.get(field)
            if not isinstance(value, str):
                continue
            if field == "subcategory":
                category = row.get("category")
                known = isinstance(category, str) and category in taxonomy.choices("category")
                if known and value in taxonomy.choices("subcategory", str(category)):
                    keyed.append((i, pair_class(str(category), value)))
            elif value in taxonomy.choices(field):
                keyed.append((i, value))
        classes = sorted({label for _, label in keyed})
        if len(classes) < 2:
            continue
        index = {label: j for j, label in enumerate(classes)}
        out[field] = FieldData(
            np.array([i for i, _ in keyed], dtype=np.int64),
            classes,
            np.array([index[label] for _, label in keyed], dtype=np.int64),
        )
    return out


class BlockTfidf:
    """scikit-learn's TF-IDF of `ticket_features` (sublinear tf, smooth idf), with the word block and
    the character block of each row L2-normalised apart (runtime/label_head.word_block_mask says why)."""

    def __init__(self, n_tickets: int, vocabulary: Sequence[str] | None = None) -> None:
        self.tfidf = TfidfVectorizer(
            analyzer=ticket_features,
            sublinear_tf=True,
            norm=None,
            min_df=2 if n_tickets >= MIN_DF_FROM else 1,
            vocabulary=vocabulary,  # a fixed one: the salient n-grams of a size-bounded head
            dtype=np.float64,
        )
        self.vocabulary: list[str] = []
        self._words = np.zeros(0, dtype=bool)

    @property
    def idf(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.tfidf.idf_, dtype=np.float64)

    def fit_transform(self, texts: Sequence[str]) -> csr_matrix:
        matrix = self.tfidf.fit_transform(texts)
        self.vocabulary = [""] * len(self.tfidf.vocabulary_)
        for feature, column in self.tfidf.vocabulary_.items():
            self.vocabulary[column] = feature
        self._words = word_block_mask(self.vocabulary)
        return self._normalised(matrix)

    def transform(self, texts: Sequence[str]) -> csr_matrix:
        return self._normalised(self.tfidf.transform(texts))

    def _normalised(self, matrix: Any) -> csr_matrix:
        matrix = csr_matrix(matrix, dtype=np.float64)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        words = self._words[matrix.indices]
        squares = matrix.data**2
        word_norms = np.sqrt(np.bincount(rows[words], squares[words], minlength=matrix.shape[0]))
        char_norms = np.sqrt(np.bincount(rows[~words], squares[~words], minlength=matrix.shape[0]))
        matrix.data /= np.where(words, word_norms[rows], char_norms[rows])
        return matrix


def _svm(c: float) -> LinearSVC:
    return LinearSVC(C=c, class_weight="balanced", max_iter=5_000)


def _fold_margins(
    features: csr_matrix,
    targets: npt.NDArray[np.int64],
    n_classes: int,
    train: npt.NDArray[np.int64],
    c: float,
    weights: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Margins for every class on the tickets outside `train`; a class absent from the fold's
    training tickets gets a margin below all others."""
    held = np.setdiff1d(np.arange(len(targets)), train)
    if len(np.unique(targets[train])) < 2:
        return np.zeros((len(held), n_classes))
    model = _svm(c).fit(features[train], targets[train], sample_weight=None if weights is None else weights[train])
    raw = model.decision_function(features[held])
    if raw.ndim == 1:  # two classes: one margin for the second
        raw = np.column_stack([-raw, raw])
    margins = np.full((len(held), n_classes), float(raw.min()) - 1.0)
    margins[:, model.classes_] = raw
    return margins


def out_of_fold(
    features: csr_matrix,
    targets: npt.NDArray[np.int64],
    n_classes: int,
    c: float,
    seed: int,
    jobs: int,
    weights: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """Each ticket's margins from a model that did not see it (plain K-fold: a class of one ticket
    is allowed, it is simply unseen in its own fold)."""
    folds = list(KFold(FOLDS, shuffle=True, random_state=seed).split(targets))
    parts = Parallel(n_jobs=jobs)(
        delayed(_fold_margins)(features, targets, n_classes, train, c, weights) for train, _ in folds
    )
    margins = np.zeros((len(targets), n_classes))
    for (_, held), part in zip(folds, parts, strict=True):
        margins[held] = part
    return margins


def fit_scale(margins: npt.NDArray[np.float64], targets: npt.NDArray[np.int64]) -> float:
    """The factor on the margins that minimises the log loss of softmax(factor x margins)."""

    def loss(log_scale: float) -> float:
        lp = log_softmax(np.exp(log_scale) * margins)
        return float(-lp[np.arange(len(targets)), targets].mean())

    found = minimize_scalar(loss, bounds=(np.log(1e-2), np.log(1e3)), method="bounded")
    return float(np.exp(found.x))


def threshold_for_precision(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], target: float
) -> float:
    """The lowest confidence t such that the answers with confidence >= t are right at least
    `target` of the time; 1.0 (review everything but certainties) when no t reaches it."""
    curve = precision_curve(confidence, correct)
    widest = curve.widest_at(target)
    return 1.0 if widest is None else float(curve.confidence[widest])


def salient_features(
    matrix: csr_matrix,
    fields: dict[LabelField, FieldData],
    keep: int,
    jobs: int,
    weights: npt.NDArray[np.float64] | None = None,
) -> list[int]:
    """The `keep` columns with the largest weight in any class of any field, by one fit per field on
    every ticket: the n-grams a size-bounded head cannot do without (the most frequent ones are not
    those: frequency-pruning to 30,000 cost 4 points of category accuracy, bench/NOTES.md)."""
    fits = Parallel(n_jobs=jobs)(
        delayed(_svm(0.2).fit)(matrix[d.rows], d.targets, None if weights is None else weights[d.rows])
        for d in fields.values()
    )
    weight = np.max([np.abs(np.asarray(model.coef_)).max(axis=0) for model in fits], axis=0)
    return sorted(int(i) for i in np.argsort(-weight, kind="stable")[:keep])


def choose_c(
    features: csr_matrix,
    targets: npt.NDArray[np.int64],
    n_classes: int,
    seed: int,
    jobs: int,
    scored: npt.NDArray[np.bool_] | None = None,
    weights: npt.NDArray[np.float64] | None = None,
) -> float:
    """The C of the grid with the best out-of-fold accuracy on a sample of the tickets, counted on the
    `scored` ones (the calibration tickets, all in the sample) when given."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(targets))
    if scored is not None:
        order = np.concatenate([order[scored[order]], order[~scored[order]]])
    sample = np.sort(order[: max(C_SEARCH_TICKETS, int(scored.sum()) if scored is not None else 0)])
    counted = scored[sample] if scored is not None else np.ones(len(sample), dtype=bool)
    scores = {}
    for c in C_GRID:
        sample_weights = None if weights is None else weights[sample]
        margins = out_of_fold(features[sample], targets[sample], n_classes, c, seed, jobs, sample_weights)
        scores[c] = float((margins.argmax(axis=1) == targets[sample])[counted].mean())
    best = max(C_GRID, key=lambda c: (scores[c], -abs(np.log(c / 0.2))))
    log.info("C by %d-fold CV on %d tickets: %s -> %s", FOLDS, len(sample), scores, best)
    return best


def data_sha256(rows: Sequence[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def fit_head(
    rows: Sequence[dict[str, Any]],
    taxonomy: Taxonomy,
    out: Path,
    *,
    target_precision: float = 0.95,
    dev_rows: Sequence[dict[str, Any]] = (),
    seed: int = 0,
    jobs: int = 2,
    ticket_tokens: int = TICKET_TOKENS,
    calibration: Sequence[bool] | None = None,
    max_features: int | None = None,
    calibration_weight: float = 1.0,
    progress: Callable[[str], None] = lambda _: None,
) -> HeadReport:
    """Fit, calibrate and save a head for every field `rows` label; measure it on `dev_rows`.

    All rows are trained on. C, the calibration and the review threshold come from out-of-fold
    predictions: of every row, or of the rows marked in `calibration` when given. Those are the
    tickets like the ones served (real ones beside synthetic ones, which are easier than real
    tickets and would make the head overconfident); `calibration_weight` weighs them in every fit."""
    started = time.perf_counter()
    fields = labelled_fields(rows, taxonomy)
    if not fields:
        raise ConfigError(
            "the training tickets label no field with two or more of the taxonomy's labels: nothing to learn"
        )
    marked = np.asarray(calibration, dtype=bool) if calibration is not None else None
    if marked is not None and len(marked) != len(rows):
        raise ValueError("calibration marks one flag per training row")
    weights = np.where(marked, calibration_weight, 1.0) if marked is not None and calibration_weight != 1.0 else None
    texts = [head_window(str(row["text"]), ticket_tokens) for row in rows]
    progress(f"counting n-grams of {len(texts)} tickets")
    vectors = BlockTfidf(len(texts))
    matrix = vectors.fit_transform(texts)
    if max_features is not None and len(vectors.vocabulary) > max_features:
        progress(f"keeping the {max_features} most salient of {len(vectors.vocabulary)} n-grams")
        keep = salient_features(matrix, fields, max_features, jobs, weights)
        vectors = BlockTfidf(len(texts), [vectors.vocabulary[i] for i in keep])
        matrix = vectors.fit_transform(texts)
    dev_texts = [head_window(str(r["text"]), ticket_tokens) for r in dev_rows]
    dev_matrix = vectors.transform(dev_texts) if dev_rows else None
    heads: dict[LabelField, FieldHead] = {}
    arrays: dict[str, npt.NDArray[Any]] = {"idf": vectors.idf}
    metrics: dict[str, dict[str, Any]] = {}
    report_fields: dict[str, dict[str, Any]] = {}
    for field, data in fields.items():
        progress(f"{field}: {len(data.classes)} labels on {len(data.rows)} tickets")
        features, n_classes = matrix[data.rows], len(data.classes)
        scored = marked[data.rows] if marked is not None and marked[data.rows].any() else None
        row_weights = None if weights is None else weights[data.rows]
        c = choose_c(features, data.targets, n_classes, seed, jobs, scored, row_weights)
        oof = out_of_fold(features, data.targets, n_classes, c, seed, jobs, row_weights)
        fit_on = scored if scored is not None else np.ones(len(data.rows), dtype=bool)
        oof, targets = oof[fit_on], data.targets[fit_on]
        scale = fit_scale(oof, targets)
        probabilities = np.exp(log_softmax(scale * oof))
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == targets
        threshold = threshold_for_precision(confidence, correct, target_precision)
        model = _svm(c).fit(features, data.targets, sample_weight=row_weights)
        coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
        if n_classes == 2:  # one margin for the second class: give the first its negative
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        arrays[f"coef_{field}"], arrays[f"intercept_{field}"] = coef.astype(np.float32), intercept
        heads[field] = FieldHead(
            classes=data.classes,
            head_weight=scale,
            llm_weight=0.0,
            review_threshold=threshold,
            fitted_on=f"out-of-fold margins of {len(targets)} "
            + ("calibration" if scored is not None else "training")
            + f" tickets ({FOLDS}-fold)",
        )
        oof_scores = score_field(targets, probabilities, threshold)
        metrics[f"{field}_out_of_fold"] = oof_scores.as_dict()
        report_fields[field] = {"C": c, "scale": round(scale, 4), "threshold": round(threshold, 4)}
        report_fields[field]["out_of_fold"] = oof_scores.as_dict()
        if dev_matrix is not None:
            dev = dev_scores(field, data.classes, dev_rows, dev_matrix, coef, intercept, scale, threshold)
            if dev is not None:
                metrics[f"{field}_dev"] = dev.as_dict()
                report_fields[field]["dev"] = dev.as_dict()
    manifest = HeadManifest(
        format=HEAD_FORMAT,
        version=HEAD_VERSION,
        taxonomy_fingerprint=taxonomy.fingerprint(),
        data_sha256=data_sha256(rows),
        examples=len(rows),
        target_precision=target_precision,
        fields=heads,
        vocabulary=vectors.vocabulary,
        ticket_tokens=ticket_tokens,
        metrics=metrics,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        ticketsmith_version=__version__,
    )
    save_head(manifest, arrays, out)
    seconds = time.perf_counter() - started
    return HeadReport(folder=str(out), examples=len(rows), fit_seconds=round(seconds, 1), fields=report_fields)


def dev_scores(
    field: LabelField,
    classes: list[str],
    dev_rows: Sequence[dict[str, Any]],
    dev_matrix: csr_matrix,
    coef: npt.NDArray[Any],
    intercept: npt.NDArray[Any],
    scale: float,
    threshold: float,
) -> FieldScores | None:
    """The head's figures on the dev tickets that carry this field's label; labels it never saw
    in training count as wrong answers (and are reported by `eval`)."""
    index = {label: j for j, label in enumerate(classes)}
    gold: list[int] = []
    rows: list[int] = []
    unseen: Counter[str] = Counter()
    for i, row in enumerate(dev_rows):
        value = row.get(field)
        if not isinstance(value, str):
            continue
        key = pair_class(str(row.get("category")), value) if field == "subcategory" else value
        rows.append(i)
        gold.append(index.get(key, -1))
        if key not in index:
            unseen[value] += 1
    if not rows:
        return None
    margins = dev_matrix[rows] @ coef.T.astype(np.float64) + intercept
    scores = score_field(np.array(gold), np.exp(log_softmax(scale * np.asarray(margins))), threshold)
    if unseen:
        log.warning("%s: dev labels never seen in training (counted wrong): %s", field, dict(unseen))
    return scores.model_copy(update={"unseen_in_training": dict(unseen)})


def save_head(manifest: HeadManifest, arrays: dict[str, npt.NDArray[Any]], out: Path) -> None:
    """Write the two files through temporary names, so a crash never leaves a half-written head."""
    out.mkdir(parents=True, exist_ok=True)
    arrays_tmp, manifest_tmp = out / (HEAD_ARRAYS + ".tmp.npz"), out / (HEAD_JSON + ".tmp")
    np.savez(arrays_tmp, **arrays)  # type: ignore[arg-type]
    manifest_tmp.write_text(manifest.model_dump_json(), encoding="utf-8")
    arrays_tmp.replace(out / HEAD_ARRAYS)
    manifest_tmp.replace(out / HEAD_JSON)


def fit_run_head(
    train_path: Path,
    dev_path: Path | None,
    taxonomy_path: Path,
    run_dir: Path,
    *,
    base: Path | None,
    max_examples: int | None,
    target_precision: float,
    ticket_tokens: int = TICKET_TOKENS,
    calibration_path: Path | None = None,
    calibration_weight: float = 1.0,
    max_features: int | None = None,
    progress: Callable[[str], None],
) -> HeadReport:
    """The head of a run folder: `run/head/`, the taxonomy it serves and `run.json` naming the base
    LLM, so that `--model run` serves it as it stands. Tickets of `calibration_path` are trained on
    too, and alone fit the calibration and thresholds (fit_head)."""
    from ticketsmith.runtime.served_model import RUN_FILE, RUN_HEAD, RUN_TAXONOMY
    from ticketsmith.runtime.taxonomy import load_taxonomy
    from ticketsmith.train.evaluate import read_labelled

    taxonomy = load_taxonomy(taxonomy_path)
    try:
        rows = read_labelled(train_path, max_examples)
        dev_rows = read_labelled(dev_path, None) if dev_path is not None else []
        calibration_rows = read_labelled(calibration_path, None) if calibration_path is not None else []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the labelled tickets: {exc}") from None
    if not rows:
        raise ConfigError(f"{train_path}: no labelled tickets (JSONL lines with a `text` field)")
    if calibration_path is not None and not calibration_rows:
        raise ConfigError(f"{calibration_path}: no labelled tickets to calibrate with")
    report = fit_head(
        [*rows, *calibration_rows],
        taxonomy,
        run_dir / RUN_HEAD,
        target_precision=target_precision,
        dev_rows=dev_rows,
        ticket_tokens=ticket_tokens,
        calibration=[False] * len(rows) + [True] * len(calibration_rows) if calibration_rows else None,
        max_features=max_features,
        calibration_weight=calibration_weight,
        progress=progress,
    )
    (run_dir / RUN_TAXONOMY).write_text(taxonomy_path.read_text(encoding="utf-8"), encoding="utf-8")
    run = {"base": str(base.resolve()) if base is not None else None, "head": RUN_HEAD}
    (run_dir / RUN_FILE).write_text(json.dumps(run, indent=2), encoding="utf-8")
    return report
