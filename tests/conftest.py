"""Shared fixtures: one real model loaded once per test session (no mocked llama.cpp), and a fake
triager for tests about connector, worker and HTTP logic.

The session model is the embedded LLM on its own, named by path so that the shipped default head
stays out: most tests check what the decoder does with the LLM's probabilities. The default head
is tested in test_default_model.py.

Test tiers: a test that loads a real model (llama.cpp, training, conversion, a `ticketsmith`
process that triages) carries the `model` marker; `make test-fast` runs the others
(`-m "not model"`). A test that asks for the `triager` or `settings` fixture, directly or through
another fixture, is marked here; a test that loads a model some other way is marked in its module."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.triager import FakeTriager
from ticketsmith.runtime.default_model import embedded_model_path
from ticketsmith.runtime.settings import RuntimeSettings, load_settings
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy
from ticketsmith.runtime.triager import Triager

REPO = Path(__file__).resolve().parent.parent

# Fixtures that load (or exist only to load) the real model, or train: `run_dir` (test_label_head.py)
# fits a label head on synthetic tickets.
MODEL_FIXTURES = frozenset({"triager", "settings", "run_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test whose fixture closure includes a model-loading fixture with `model`."""
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def taxonomy() -> Taxonomy:
    return load_taxonomy(REPO / "configs" / "taxonomy.yaml")


@pytest.fixture(scope="session")
def settings() -> RuntimeSettings:
    return load_settings(model_path=embedded_model_path(), n_threads=2)


@pytest.fixture(scope="session")
def triager(settings: RuntimeSettings) -> Iterator[Triager]:
    loaded = Triager(settings)
    yield loaded
    loaded.close()


@pytest.fixture
def fake_triager(taxonomy: Taxonomy) -> FakeTriager:
    """The stand-in for logic tests (tests/fakes/triager.py): answers at once, loads no model."""
    return FakeTriager(taxonomy)
