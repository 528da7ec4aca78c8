"""QLoRA's guard: a 4-bit run that cannot work here stops at once with one line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch

from ticketsmith.train.qlora import qlora_blocker, wants_4bit

CPU_ONLY = not torch.cuda.is_available()


def test_auto_is_qlora_only_on_a_gpu() -> None:
    assert wants_4bit("auto", cuda=True)
    assert not wants_4bit("auto", cuda=False)
    assert wants_4bit("4bit", cuda=False)
    assert not wants_4bit("none", cuda=True)


@pytest.mark.skipif(not CPU_ONLY, reason="checks the CPU-only box")
def test_no_gpu_is_the_reason_on_a_cpu() -> None:
    reason = qlora_blocker(cuda=False)
    assert reason is not None and "CUDA GPU" in reason and "\n" not in reason


def test_a_gpu_without_cuda_bitsandbytes_is_refused() -> None:
    """As on a GPU box without the `gpu` extra, or with a CPU-only bitsandbytes: the CUDA check of
    the library is what decides, not whether transformers' BitsAndBytesConfig imports."""
    try:
        from bitsandbytes.cextension import lib
    except ImportError:
        cuda_library = False
    else:
        cuda_library = bool(getattr(lib, "compiled_with_cuda", False))
    if cuda_library:
        pytest.skip("a CUDA build of bitsandbytes is installed")
    reason = qlora_blocker(cuda=True)
    assert reason is not None and "bitsandbytes" in reason and "\n" not in reason


@pytest.mark.skipif(not CPU_ONLY, reason="checks the CPU-only box")
def test_train_with_4bit_stops_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"text": "printer jams", "category": "Hardware"}) + "\n")
    config = tmp_path / "train.yaml"
    config.write_text(f"train_data: {data}\noutput_dir: {tmp_path / 'run'}\nquantization: 4bit\n")
    done = subprocess.run(
        [sys.executable, "-m", "ticketsmith", "train", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: QLoRA") and "CUDA GPU" in lines[0], done.stderr
    assert not (tmp_path / "run").exists()  # stopped before the label head or any training wrote a thing
