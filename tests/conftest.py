"""Shared fixtures: one real model loaded once per test session (no mocked llama.cpp).

The session model is the embedded LLM on its own, named by path so that the shipped default head
stays out: most tests check what the decoder does with the LLM's probabilities. The default head
is tested in test_default_model.py."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketsmith.runtime.default_model import embedded_model_path
from ticketsmith.runtime.settings import RuntimeSettings, load_settings
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy
from ticketsmith.runtime.triager import Triager

REPO = Path(__file__).resolve().parent.parent


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
