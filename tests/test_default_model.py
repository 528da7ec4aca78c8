"""The shipped default head: built from what the repo holds, small, served with the default taxonomy
only, and never trained on the hand-written test fifth."""

import json
from pathlib import Path

import pytest

from ticketsmith.runtime.default_model import DEFAULT_HEAD_DIR, default_head_path, embedded_model_path
from ticketsmith.runtime.label_head import HEAD_ARRAYS, HEAD_JSON, LabelHead
from ticketsmith.runtime.served_model import resolve
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager

REPO = Path(__file__).resolve().parent.parent
HANDWRITTEN = REPO / "bench" / "data" / "handwritten"
TINY = Path(__file__).parent / "data" / "tiny_taxonomy.yaml"
MAX_BYTES = 15 * 2**20  # the default-model issue's bound on what ships

pytest.importorskip("sklearn", reason="the training extra is not installed")
from ticketsmith.train.default_build import MANIFEST, DefaultModelManifest, is_test_fifth, sha256  # noqa: E402


def manifest() -> DefaultModelManifest:
    return DefaultModelManifest.model_validate_json((DEFAULT_HEAD_DIR / MANIFEST).read_text(encoding="utf-8"))


def test_the_default_head_ships_small_and_for_the_default_taxonomy(taxonomy: Taxonomy) -> None:
    assert default_head_path() == DEFAULT_HEAD_DIR
    size = sum((DEFAULT_HEAD_DIR / name).stat().st_size for name in (HEAD_JSON, HEAD_ARRAYS))
    assert size <= MAX_BYTES and manifest().head_bytes == size
    head = LabelHead(DEFAULT_HEAD_DIR, taxonomy)
    assert manifest().taxonomy_fingerprint == taxonomy.fingerprint() == head.manifest.taxonomy_fingerprint
    assert set(head.fields) == set(taxonomy.fields)


def test_the_default_head_was_built_from_the_inputs_the_repo_holds() -> None:
    """Editing the bank or the hand-written set without `make default-model` fails here."""
    recorded = manifest().inputs_sha256
    for name, digest in recorded.items():
        if name.startswith(("train/bank/", "bench/data/", "configs/")):
            assert sha256(REPO / name) == digest, f"{name} changed since the default head was built"
    bank = {f"train/bank/{p.name}" for p in (REPO / "train" / "bank").glob("*.yaml")}
    assert bank <= set(recorded)


def test_the_test_fifth_is_a_fixed_rule_and_four_tickets_per_subcategory() -> None:
    if not HANDWRITTEN.is_dir():
        pytest.skip("the hand-written set is not in this checkout")
    rows = [json.loads(line) for path in HANDWRITTEN.glob("*.jsonl") for line in path.read_text().splitlines()]
    test = [r for r in rows if is_test_fifth(r["id"])]
    per_subcategory: dict[str, int] = {}
    for row in test:
        per_subcategory[row["subcategory"]] = per_subcategory.get(row["subcategory"], 0) + 1
    assert len(test) * 5 == len(rows) and set(per_subcategory.values()) == {4}
    assert manifest().handwritten_test == len(test) and manifest().handwritten_train == len(rows) - len(test)
    assert all(is_test_fifth(i) for i in ("HW-LAP-05", "SR-INF-20")) and not is_test_fifth("HW-LAP-01")


@pytest.mark.model  # loads the real model and head
def test_a_plain_triage_serves_the_default_head_over_the_embedded_model() -> None:
    served = resolve(None)
    assert served.gguf == embedded_model_path() and served.head == DEFAULT_HEAD_DIR and served.head_is_default
    triager = Triager(load_settings(n_threads=2))
    try:
        assert triager.head is not None and triager.trained_fields == list(triager.taxonomy.fields)
        result = triager.triage("The screen of my ThinkPad cracked when it fell off my desk this morning.")
        assert (result.category, result.subcategory) == ("Hardware", "Laptop")
        assert "default_head" in triager.model_label()
    finally:
        triager.close()


@pytest.mark.model  # loads the real model
def test_another_taxonomy_is_served_without_the_default_head() -> None:
    triager = Triager(load_settings(taxonomy_path=TINY, n_threads=2, n_ctx=1024))
    try:
        assert triager.head is None and triager.trained_fields == []
        assert triager.triage("printer jams").needs_review
    finally:
        triager.close()


def test_the_bare_embedded_model_is_served_untrained_when_named(taxonomy: Taxonomy) -> None:
    """`--model` naming the embedded GGUF itself serves it with no head: the honest untrained default."""
    assert resolve(embedded_model_path()).head is None
