from pathlib import Path

import pytest

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.settings import load_settings


def test_config_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "ticketsmith.yaml"
    config.parent.mkdir()
    config.write_text("model_path: models/m.gguf\nn_threads: 3\nreview_thresholds: {category: 0.9}\n")
    settings = load_settings(config)
    assert settings.model_path == tmp_path / "conf" / "models" / "m.gguf"
    assert settings.n_threads == 3
    assert settings.review_thresholds.category == 0.9
    assert settings.review_thresholds.urgency == 0.4


def test_flags_beat_file_and_file_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("n_threads: 3\n")
    monkeypatch.setenv("TICKETSMITH_N_THREADS", "5")
    monkeypatch.setenv("TICKETSMITH_N_CTX", "2048")
    assert load_settings(config).n_threads == 3
    assert load_settings(config, n_threads=7).n_threads == 7
    assert load_settings(config).n_ctx == 2048


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n_threads: 0\n", "n_threads: Input should be greater than or equal to 1"),
        ("n_thread: 2\n", "n_thread: is not a known key"),
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
