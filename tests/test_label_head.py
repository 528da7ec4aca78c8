"""The label head: its features and TF-IDF are scikit-learn's, its artifact is plain arrays and JSON,
its calibration and thresholds do what they say, and the runtime fuses it into every decision."""

import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("sklearn", reason="the training extra is not installed")
from sklearn.feature_extraction.text import TfidfVectorizer

from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.label_head import HEAD_ARRAYS, HEAD_JSON, LabelHead, ticket_features
from ticketsmith.runtime.prompt import TICKET_TOKENS
from ticketsmith.runtime.settings import RuntimeSettings
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Taxonomy, load_taxonomy
from ticketsmith.runtime.triager import UNTRAINED_REASON, Triager
from ticketsmith.train import fusion_fit
from ticketsmith.train.fusion_fit import Decision, fit_weights
from ticketsmith.train.label_head import fit_run_head, fit_scale, threshold_for_precision
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "data" / "tiny_taxonomy.yaml"


def _write(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Path:
    """A head-only run on the default taxonomy, fitted on synthetic tickets labelled in every field."""
    root = tmp_path_factory.mktemp("head")
    rows = [t.model_dump(mode="json") for t in generate(taxonomy, 240, seed=11)]
    dev = [t.model_dump(mode="json") for t in generate(taxonomy, 40, seed=12)]
    fit_run_head(
        _write(root / "train.jsonl", rows),
        _write(root / "dev.jsonl", dev),
        REPO / "configs" / "taxonomy.yaml",
        root / "run",
        base=None,
        max_examples=None,
        target_precision=0.95,
        progress=lambda _: None,
    )
    return root / "run"


@pytest.fixture(scope="module")
def head(run_dir: Path, taxonomy: Taxonomy) -> LabelHead:
    return LabelHead(run_dir / "head", taxonomy)


def test_the_head_reads_the_start_and_end_the_ticket_token_budget_keeps(head: LabelHead) -> None:
    """Fitted and served on the same window: what a long mail says between its start and its end
    changes nothing, as it changes nothing for the LLM."""
    assert head.manifest.ticket_tokens == TICKET_TOKENS
    start, end = "my laptop screen is cracked. " * 60, " please send a new one." * 30
    printer = head.margins(start + "printer toner paper jam " * 500 + end)
    password = head.margins(start + "password reset locked out " * 500 + end)
    assert all(np.array_equal(printer[f], password[f]) for f in head.fields)


def test_calibration_tickets_alone_fit_calibration_and_a_bounded_head_keeps_salient_ngrams(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    """Synthetic tickets are easier than real ones: when real ones are given, they alone set the
    calibration and thresholds (out of fold), and a size bound keeps the n-grams the classes weigh."""
    synthetic = [t.model_dump(mode="json") for t in generate(taxonomy, 200, seed=3)]
    real = [t.model_dump(mode="json") for t in generate(taxonomy, 60, seed=4)]
    report = fit_run_head(
        _write(tmp_path / "synthetic.jsonl", synthetic),
        None,
        REPO / "configs" / "taxonomy.yaml",
        tmp_path / "run",
        base=None,
        max_examples=None,
        target_precision=0.95,
        calibration_path=_write(tmp_path / "real.jsonl", real),
        max_features=500,
        progress=lambda _: None,
    )
    head = LabelHead(tmp_path / "run" / "head", taxonomy)
    assert len(head.manifest.vocabulary) == 500 and head.manifest.examples == 260
    assert all(spec.fitted_on.startswith("out-of-fold margins of 60 calibration") for spec in head.fields.values())
    assert all(field["out_of_fold"]["scored"] == 60 for field in report.fields.values())


words = st.text(alphabet=st.sampled_from("abcXYZ éß1_-.!? \t\n"), max_size=60)


@settings(max_examples=200, deadline=None)
@given(words)
def test_features_are_scikit_learns_word_and_char_wb_ngrams(text: str) -> None:
    word = TfidfVectorizer(ngram_range=(1, 2)).build_analyzer()
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)).build_analyzer()
    expected = Counter(["w:" + f for f in word(text)] + ["c:" + f for f in char(text)])
    assert Counter(ticket_features(text)) == expected


def test_head_rows_are_scikit_learns_tfidf_of_each_block(head: LabelHead, taxonomy: Taxonomy) -> None:
    """The runtime's numpy TF-IDF against scikit-learn's, fitted apart on the word n-grams and on the
    character n-grams (each block L2-normalised on its own): the same sums of the same terms in
    another order, so equal to float64 rounding (1e-12)."""
    rows = [t.model_dump(mode="json") for t in generate(taxonomy, 240, seed=11)]
    texts = [r["text"] for r in rows]
    blocks = {
        prefix: TfidfVectorizer(
            analyzer=lambda t, p=prefix: [f for f in ticket_features(t) if f.startswith(p)], sublinear_tf=True
        ).fit(texts)
        for prefix in ("w:", "c:")
    }
    assert sorted(f for b in blocks.values() for f in b.vocabulary_) == sorted(head.manifest.vocabulary)
    assert head.manifest.version == 2
    for text in [*texts[:20], "printer on fire", "zzzz unseen words only"]:
        expected: dict[str, float] = {}
        for block in blocks.values():
            row = block.transform([text]).toarray()[0]
            expected.update({f: row[i] for f, i in block.vocabulary_.items() if row[i]})
        columns, values = head.features(text)
        got = {head.manifest.vocabulary[c]: v for c, v in zip(columns, values, strict=True)}
        assert got.keys() == expected.keys()
        assert max((abs(got[f] - expected[f]) for f in got), default=0.0) < 1e-12


def test_a_version_1_head_is_still_served_with_its_single_norm(
    run_dir: Path, tmp_path: Path, taxonomy: Taxonomy
) -> None:
    old = tmp_path / "head"
    shutil.copytree(run_dir / "head", old)
    manifest = json.loads((old / HEAD_JSON).read_text())
    (old / HEAD_JSON).write_text(json.dumps({**manifest, "version": 1}))
    _, values = LabelHead(old, taxonomy).features("printer jams on every page")
    _, blocks = LabelHead(run_dir / "head", taxonomy).features("printer jams on every page")
    assert abs(np.linalg.norm(values) - 1.0) < 1e-12  # one norm over both blocks, as version 1 was fitted
    assert abs(np.linalg.norm(blocks) - math.sqrt(2)) < 1e-12  # two unit blocks


def test_head_artifact_is_plain_json_and_arrays(run_dir: Path, head: LabelHead) -> None:
    with np.load(run_dir / "head" / HEAD_ARRAYS, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    manifest = json.loads((run_dir / "head" / HEAD_JSON).read_text())
    assert manifest["format"] == "ticketsmith-label-head" and manifest["version"] == 2
    assert set(manifest["fields"]) == set(LABEL_FIELDS)  # the synthetic tickets label every field
    assert len(manifest["data_sha256"]) == 64 and manifest["examples"] == 240
    assert (run_dir / "taxonomy.yaml").is_file() and json.loads((run_dir / "run.json").read_text())["base"] is None


def test_threshold_reaches_the_target_precision_by_hand() -> None:
    confidence = np.array([0.99, 0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, True, False, True, False])
    assert threshold_for_precision(confidence, correct, 1.0) == 0.8
    assert threshold_for_precision(confidence, correct, 0.8) == 0.6  # 4 of 5 at 0.6
    assert threshold_for_precision(confidence, np.zeros(6, dtype=bool), 0.5) == 1.0  # never reached


@settings(max_examples=10, deadline=None)
@given(st.floats(0.3, 5.0), st.integers(0, 1000))
def test_scale_recovers_the_temperature_the_labels_were_drawn_with(scale: float, seed: int) -> None:
    """Labels drawn from softmax(scale x margins): the fitted factor is that scale, within the
    sampling noise of 4,000 draws (the bound, 25%, is about four standard errors at scale 5)."""
    rng = np.random.default_rng(seed)
    margins = rng.normal(size=(4000, 4))
    p = np.exp(scale * margins)
    p /= p.sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(4, p=row) for row in p])
    assert fit_scale(margins, targets) == pytest.approx(scale, rel=0.25)


def test_tiny_groups_and_unseen_labels_do_not_break_the_fit(tmp_path: Path) -> None:
    """A group of one ticket (unseen in its own fold) and a label only the dev split has."""
    tiny = load_taxonomy(TINY)
    rows = [t.model_dump(mode="json") for t in generate(tiny, 40, seed=3)]
    printer = next(r for r in rows if r["subcategory"] == "Printer")
    rows = [r for r in rows if r["subcategory"] not in ("Printer", "New Account")] + [printer]
    dev = [
        {"text": "please create an account for the new starter", "category": "Access", "subcategory": "New Account"},
        {"text": "printer jam", "category": "Hardware", "subcategory": "Printer"},
    ]
    report = fit_run_head(
        _write(tmp_path / "t.jsonl", rows),
        _write(tmp_path / "d.jsonl", dev),
        TINY,
        tmp_path / "run",
        base=None,
        max_examples=None,
        target_precision=0.95,
        progress=lambda _: None,
    )
    assert report.fields["subcategory"]["dev"]["scored"] == 2
    assert report.fields["subcategory"]["dev"]["unseen_in_training"] == {"New Account": 1}


def test_broken_or_foreign_head_is_one_clear_error(run_dir: Path, tmp_path: Path, taxonomy: Taxonomy) -> None:
    with pytest.raises(ModelError, match="fitted for taxonomy"):
        LabelHead(run_dir / "head", load_taxonomy(TINY))
    for damage in ("truncate", "drop_json", "bad_json"):
        broken = tmp_path / damage / "head"
        broken.mkdir(parents=True)
        for name in (HEAD_JSON, HEAD_ARRAYS):
            (broken / name).write_bytes((run_dir / "head" / name).read_bytes())
        if damage == "truncate":
            data = (broken / HEAD_ARRAYS).read_bytes()
            (broken / HEAD_ARRAYS).write_bytes(data[: len(data) // 2])
        elif damage == "drop_json":
            (broken / HEAD_JSON).unlink()
        else:
            (broken / HEAD_JSON).write_text('{"format": "ticketsmith-label-head"')
        with pytest.raises(ModelError, match=f"label head {broken}.*retrain"):
            LabelHead(broken, taxonomy)


def test_untrained_default_never_auto_accepts(triager: Triager) -> None:
    result = triager.triage("my laptop screen cracked")
    assert result.needs_review and result.review_reason == UNTRAINED_REASON
    assert result.review_fields == list(LABEL_FIELDS) == result.untrained_fields


@pytest.fixture(scope="module")
def head_triager(settings: RuntimeSettings, run_dir: Path) -> Iterator[Triager]:
    loaded = Triager(settings.model_copy(update={"model_path": run_dir}))
    yield loaded
    loaded.close()


TEXTS = ["Outlook crashes when opening attachments", "My monitor flickers and then goes black", "VPN drops at home"]


@pytest.mark.parametrize("text", TEXTS)
def test_fused_confidences_are_the_fused_distribution(head_triager: Triager, text: str) -> None:
    outcome = head_triager.triage_with_parts(text)
    result = outcome.result
    assert result.subcategory in head_triager.taxonomy.choices("subcategory", result.category)
    assert result.untrained_fields == [] and result.review_reason is None
    for field in LABEL_FIELDS:
        part = outcome.parts[field]
        assert part.head is not None
        assert math.isclose(float(np.exp(part.fused).sum()), 1.0, abs_tol=1e-9)
        assert math.isclose(float(np.exp(part.head).sum()), 1.0, abs_tol=1e-9)
        chosen = part.labels.index(getattr(result, field))
        assert chosen == int(np.argmax(part.fused))
        assert getattr(result.confidence, field) == pytest.approx(float(np.exp(part.fused[chosen])), abs=1e-12)
        threshold = head_triager.thresholds[field]
        assert (field in result.review_fields) == (getattr(result.confidence, field) < threshold)


def test_fusion_weights_move_the_decision_between_the_parts(head_triager: Triager, triager: Triager) -> None:
    """llm_weight 0: every label is the head's; head_weight 0 and llm_weight 1: the LLM's alone,
    exactly as served without a head (the same engine computes the same logits in both runs)."""
    assert head_triager.head is not None
    fields = head_triager.head.fields
    original = dict(fields)
    try:
        for field, spec in original.items():
            fields[field] = spec.model_copy(update={"llm_weight": 0.0})
        outcome = head_triager.triage_with_parts(TEXTS[0])
        for field in LABEL_FIELDS:
            part = outcome.parts[field]
            assert part.head is not None and getattr(outcome.result, field) == part.labels[int(np.argmax(part.head))]
        for field, spec in original.items():
            fields[field] = spec.model_copy(update={"llm_weight": 1.0, "head_weight": 0.0})
        llm_only = head_triager.triage_with_parts(TEXTS[0])
        head = head_triager.head
        head_triager.head = None
        try:
            plain = head_triager.triage_with_parts(TEXTS[0])
        finally:
            head_triager.head = head
    finally:
        fields.update(original)
    labels: set[str] = set(LABEL_FIELDS)
    assert llm_only.result.model_dump(include=labels) == plain.result.model_dump(include=labels)
    for field in LABEL_FIELDS:
        assert getattr(llm_only.result.confidence, field) == pytest.approx(
            getattr(plain.result.confidence, field), abs=1e-9
        )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ticketsmith", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.model  # `ticketsmith train --head-only` and `eval` train and load the real model
def test_head_only_run_is_served_and_evaluated_as_it_stands(tmp_path: Path) -> None:
    tiny = load_taxonomy(TINY)
    train = _write(tmp_path / "train.jsonl", [t.model_dump(mode="json") for t in generate(tiny, 60, seed=1)])
    dev = _write(tmp_path / "dev.jsonl", [t.model_dump(mode="json") for t in generate(tiny, 6, seed=2)])
    fitted = _cli("train", "--head-only", "--data", str(train), "--dev", str(dev), "--taxonomy", str(TINY))
    assert fitted.returncode == 2 and "output_dir" in fitted.stderr  # a run folder is required
    run = tmp_path / "run"
    fitted = _cli(
        "train", "--head-only", "--data", str(train), "--dev", str(dev), "--taxonomy", str(TINY), "--out", str(run)
    )
    assert fitted.returncode == 0, fitted.stderr
    assert json.loads(fitted.stdout)["fields"]["category"]["dev"]["scored"] == 6
    evaluated = _cli(
        "eval", "--model", str(run), "--data", str(dev), "--out", str(tmp_path / "report"), "--threads", "2"
    )
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "report" / "eval.json").read_text())
    assert set(report["parts"]["category"]) == {"llm", "head", "fused"}
    assert report["fields"]["category"]["accuracy"] == report["parts"]["category"]["fused"]["scores"]["accuracy"]
    assert report["target_precision"] == 0.95 and "head=head:" in report["model"]
    (run / "head" / HEAD_ARRAYS).write_bytes(b"PK\x03\x04 not a zip")
    broken = _cli("triage", "--model", str(run), "printer jam")
    assert broken.returncode == 2 and f"label head {run / 'head'}" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


@settings(max_examples=5, deadline=None)
@given(st.floats(0.5, 4.0), st.floats(0.0, 3.0), st.integers(0, 1000))
def test_fusion_weights_are_recovered_from_the_decisions_they_generated(
    head_weight: float, llm_weight: float, seed: int
) -> None:
    """Gold labels drawn from the fused distribution of known weights: log loss finds them again
    (within 30%, or 0.3 absolute for a weight near 0: the noise of 3,000 draws)."""
    rng = np.random.default_rng(seed)
    decisions = []
    for _ in range(3000):
        margins, llm = rng.normal(size=5), np.log(rng.dirichlet(np.ones(5)))
        p = np.exp(head_weight * margins + llm_weight * llm)
        decisions.append(Decision(llm, margins, int(rng.choice(5, p=p / p.sum()))))
    found = fit_weights(decisions, (1.0, 0.1))
    assert found[0] == pytest.approx(head_weight, rel=0.3, abs=0.3)
    assert found[1] == pytest.approx(llm_weight, rel=0.3, abs=0.3)


def test_fuse_refits_and_saves_the_weights_the_runtime_then_serves(
    run_dir: Path, tmp_path: Path, settings: RuntimeSettings, taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    rows = [t.model_dump(mode="json") for t in generate(taxonomy, 8, seed=21)]
    triager = Triager(settings.model_copy(update={"model_path": copy}))
    try:
        monkeypatch.setattr(fusion_fit, "MIN_DECISIONS", 5)
        report = fusion_fit.fuse(triager, rows, 0.95, lambda _: None)
    finally:
        triager.close()
    assert set(report) <= set(LABEL_FIELDS) and "category" in report
    saved = LabelHead(copy / "head", taxonomy)
    for field, fitted in report.items():
        spec = saved.fields[field]  # type: ignore[index]
        assert (spec.head_weight, spec.llm_weight, spec.review_threshold) == (
            fitted["head_weight"],
            fitted["llm_weight"],
            fitted["threshold"],
        )
        assert spec.fitted_on.startswith("fuse:")
