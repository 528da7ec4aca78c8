from pathlib import Path

import pytest

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.settings import load_runtime_section, load_settings


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "ticketsmith.yaml"
    config.parent.mkdir()
    config.write_text("model_path: models/m.gguf\nn_threads: 3\nreview_thresholds: {category: 0.9}\n")
    settings = load_settings(config)
    assert settings.model_path == tmp_path / "conf" / "models" / "m.gguf"
    assert settings.n_threads == 3
    assert settings.review_thresholds.category == 0.9
    assert settings.review_thresholds.urgency == 0.4


def test_flags_beat_environment_and_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("n_threads: 3\nn_ctx: 1024\nreview_thresholds: {category: 0.9}\n")
    assert load_settings(config).n_threads == 3
    monkeypatch.setenv("TICKETSMITH_N_THREADS", "5")
    monkeypatch.setenv("TICKETSMITH_REVIEW_THRESHOLDS__URGENCY", "0.7")
    assert load_settings(config).n_threads == 5  # a systemd EnvironmentFile overrides the packaged YAML
    assert load_settings(config, n_threads=7).n_threads == 7
    assert load_settings(config).n_ctx == 1024
    assert load_settings().n_threads == 5


def test_worker_runtime_section_has_the_same_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worker_yaml = tmp_path / "etc" / "worker.yaml"
    section = {"model_path": "models/m.gguf", "n_threads": 3}
    assert load_runtime_section(section, worker_yaml).model_path == tmp_path / "etc" / "models" / "m.gguf"
    monkeypatch.setenv("TICKETSMITH_MODEL_PATH", "/opt/other.gguf")
    assert load_runtime_section(section, worker_yaml).model_path == Path("/opt/other.gguf")
    flagged = load_runtime_section(section, worker_yaml, model_path=Path("/x.gguf"), n_threads=None)
    assert flagged.model_path == Path("/x.gguf") and flagged.n_threads == 3
    with pytest.raises(
        ConfigError, match=r"worker.yaml \(runtime\): invalid RuntimeSettings:\n  n_thread: .*did you mean `n_threads`"
    ):
        load_runtime_section({"n_thread": 2}, worker_yaml)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n_threads: 0\n", "n_threads: Input should be greater than or equal to 1"),
        ("n_thread: 2\n", "n_thread: is not a known key: did you mean `n_threads`?"),
        (
            "review_thresholds: {categroy: 0.5}\n",
            "review_thresholds.categroy: is not a known key: did you mean `category`?",
        ),
        ("review_thresholds: {category: 1.5}\n", "review_thresholds.category: Input should be less than or equal to 1"),
        ("- a list\n", "expected a mapping of settings"),
        ("n_threads: [\n", "invalid YAML"),
    ],
)
def test_bad_settings_name_file_and_place(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(config) in str(info.value)
    assert expected in str(info.value)
