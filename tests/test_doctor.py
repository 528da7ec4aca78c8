"""`ticketsmith doctor`: the real build and the embedded model end to end, its exit codes, and the
parts that need a GPU (the fit verdict, llama.cpp's offload line) on recorded inputs."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ticketsmith.cli import app
from ticketsmith.doctor import diagnose
from ticketsmith.doctor_fit import MIB, gpu_fit
from ticketsmith.doctor_render import Section, render_section
from ticketsmith.doctor_report import DoctorReport, GpuCard
from ticketsmith.runtime.default_model import DEFAULT_MODEL_FILE
from ticketsmith.runtime.errors import DecodingError
from ticketsmith.runtime.host import host_cpu, parse_smi
from ticketsmith.runtime.llama_log import LlamaLog, load_report
from ticketsmith.runtime.settings import RuntimeSettings
from ticketsmith.runtime.triager import Triager
from ticketsmith.versions import installed_version

runner = CliRunner()
SECTIONS = {"build", "model", "serving", "offload", "sample"}


def test_doctor_on_the_embedded_model(settings: RuntimeSettings, triager: Triager) -> None:
    shown: list[str] = []

    def emit(section: Section) -> None:
        shown.append(render_section(section))

    report = diagnose(settings, lambda _: triager, emit, keep_loaded=True)
    assert report.ok and report.exit_code == 0 and report.error is None, report.error
    assert report.build is not None and report.model is not None and report.sample is not None
    assert report.offload is not None and report.serving is not None
    assert report.build.llama_cpp_python == installed_version("llama-cpp-python")
    assert report.build.cpu_build in ("portable", "native") and "CPU" in report.build.backends
    assert Path(report.model.path).name == DEFAULT_MODEL_FILE and len(report.model.sha256_prefix) == 12
    assert not report.serving.trained_fields  # the embedded default is not trained for any taxonomy
    assert set(report.sample.labels) == set(triager.taxonomy.fields)
    assert report.sample.labels["category"] in triager.taxonomy.choices("category")
    if not report.build.gpu_offload:
        assert report.offload.fit.verdict == "cpu" and report.offload.fit.note.startswith("no GPU: CPU inference")
    text = "\n".join(shown)
    assert text.startswith("llama.cpp build") and "llama-cpp-python" in text and DEFAULT_MODEL_FILE in text
    assert f"category={report.sample.labels['category']}" in text and "lowest confidence" in text


@pytest.mark.model  # `ticketsmith doctor` loads the real model
def test_json_report_through_the_cli() -> None:
    result = runner.invoke(app, ["doctor", "--json", "--threads", "2"])
    assert result.exit_code == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert set(parsed) == set(DoctorReport.model_fields) and parsed["ok"] is True
    assert all(parsed[name] is not None for name in SECTIONS)
    DoctorReport.model_validate(parsed)  # every section with its expected keys
    assert {"cpu_build", "cpu_variants", "cpu_variant", "gpu_offload", "cpu_flags"} <= set(parsed["build"])
    assert {"labels", "lowest_confidence", "ms"} <= set(parsed["sample"])
    assert parsed["offload"]["fit"]["verdict"] in ("cpu", "fits", "partial", "not_offloaded")


def test_a_missing_model_is_one_line_and_exit_2() -> None:
    result = runner.invoke(app, ["doctor", "--model", "/nonexistent.gguf"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: model file not found: /nonexistent.gguf"]


def test_json_failure_is_still_json() -> None:
    result = runner.invoke(app, ["doctor", "--json", "--model", "/nonexistent.gguf"])
    assert result.exit_code == 2
    parsed = json.loads(result.stdout)
    assert parsed["ok"] is False and parsed["exit_code"] == 2 and "not found" in parsed["error"]


def test_a_model_unlike_its_manifest_is_corrupt(tmp_path: Path) -> None:
    model = tmp_path / "tickets.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    manifest = {
        "base_model": "b",
        "adapter": "a",
        "quant": "Q4_K_M",
        "kind": "model",
        "taxonomy_fingerprint": "f",
        "prompt_version": "p",
        "sha256": "0" * 64,
        "created": "2025-01-01T00:00:00+00:00",
        "ticketsmith_version": "0.1.0",
    }
    (tmp_path / "tickets.gguf.manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["doctor", "--model", str(model)])
    assert result.exit_code == 2 and "is corrupt" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_corrupt_gguf_gives_llama_cpps_reason(tmp_path: Path) -> None:
    model = tmp_path / "cut.gguf"
    model.write_bytes(b"GGUF\x03\x00\x00\x00" + b"not a header" * 4)
    result = runner.invoke(app, ["doctor", "--model", str(model)])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "llama.cpp could not load" in result.stderr and "(llama.cpp: gguf_init_from_reader" in result.stderr


def test_settings_come_by_the_worker_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker YAML's runtime section is read as the worker reads it; the environment and then a
    flag override it (each named model is missing, so nothing loads)."""
    config = tmp_path / "worker.yaml"
    config.write_text("state_dir: state\nruntime:\n  model_path: from-yaml.gguf\n")
    result = runner.invoke(app, ["doctor", "--config", str(config)])
    assert result.exit_code == 2 and str(tmp_path / "from-yaml.gguf") in result.stderr
    monkeypatch.setenv("TICKETSMITH_MODEL_PATH", "/from-env.gguf")
    assert "/from-env.gguf" in runner.invoke(app, ["doctor", "--config", str(config)]).stderr
    flagged = runner.invoke(app, ["doctor", "--config", str(config), "--model", "/from-flag.gguf"])
    assert "/from-flag.gguf" in flagged.stderr
    runtime_yaml = tmp_path / "runtime.yaml"
    runtime_yaml.write_text("model_path: plain.gguf\n")
    monkeypatch.delenv("TICKETSMITH_MODEL_PATH")
    assert str(tmp_path / "plain.gguf") in runner.invoke(app, ["doctor", "--config", str(runtime_yaml)]).stderr


def test_a_failing_sample_ticket_exits_1(
    settings: RuntimeSettings, triager: Triager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(text: str, ticket_id: str | int | None = None) -> None:
        raise DecodingError("the model's answer does not validate:\n  category: bad")

    monkeypatch.setattr(triager, "triage", broken)
    report = diagnose(settings, lambda _: triager, lambda _: None, keep_loaded=True)
    assert report.exit_code == 1 and not report.ok and report.sample is None
    assert report.error == "the model's answer does not validate: category: bad"


def _card(source: str, free_mib: int, total_mib: int, name: str = "CUDA0") -> GpuCard:
    return GpuCard.model_validate(
        {"name": name, "source": source, "free_bytes": free_mib * MIB, "total_bytes": total_mib * MIB}
    )


def test_gpu_fit_verdicts() -> None:
    model = 900 * MIB
    assert gpu_fit([], False, 0, 31, model, {}).note == "no GPU: CPU inference"
    cpu_build_on_gpu_box = gpu_fit([_card("nvidia-smi", 3900, 4096, "GTX 1650")], False, 0, 31, model, {})
    assert cpu_build_on_gpu_box.verdict == "cpu" and "make gpu" in cpu_build_on_gpu_box.note
    whole = gpu_fit([_card("llama.cpp", 2900, 4096)], True, 31, 31, model, {"CUDA0": 900.0, "CPU_Mapped": 40.0})
    assert whole.verdict == "fits" and whole.fits is True
    none = gpu_fit([_card("llama.cpp", 3900, 4096)], True, 0, 31, model, {"CPU_Mapped": 900.0})
    assert none.verdict == "not_offloaded" and none.fits is True and "n_gpu_layers: -1" in none.note
    half = gpu_fit([_card("llama.cpp", 100, 4096)], True, 12, 31, 5000 * MIB, {"CUDA0": 2000.0})
    assert half.verdict == "partial" and half.fits is False and "12/31" in half.note


def test_offload_is_read_from_llama_cpp_log() -> None:
    log = LlamaLog()
    for level, text in [
        (2, "load_tensors: offloading 30 repeating layers to GPU\n"),
        (2, "load_tensors: offloaded 31/"),
        (5, "31 layers to GPU\n"),
        (2, "load_tensors:        CUDA0 model buffer size =   850.25 MiB\nload_tensors:   CPU_Mapped model buffer"),
        (5, " size =    40.00 MiB\n"),
        (4, "gguf_init_from_reader: failed"),
        (5, " to read header\n"),
    ]:
        log.add(level, text)
    report = load_report(log)
    assert (report.offloaded_layers, report.total_layers) == (31, 31)
    assert report.line == "load_tensors: offloaded 31/31 layers to GPU"
    assert report.buffers_mib == {"CUDA0": 850.25, "CPU_Mapped": 40.0}
    assert log.errors == ["gguf_init_from_reader: failed to read header"]


def test_host_facts_parse(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse4_2 avx avx2 avx512f avx512_vnni amx_tile sha_ni\n"
        "\nprocessor\t: 1\nmodel name\t: Other\n"
    )
    cpu = host_cpu(cpuinfo)
    assert cpu.model == "Some Xeon" and cpu.flags == ("amx_tile", "avx", "avx2", "avx512_vnni", "avx512f", "sse4_2")
    assert host_cpu(tmp_path / "missing").flags == ()
    gpus = parse_smi("NVIDIA GeForce GTX 1650, 312, 4096\nnot a line\n")
    assert [(g.name, g.used_mib, g.total_mib) for g in gpus] == [("NVIDIA GeForce GTX 1650", 312, 4096)]
