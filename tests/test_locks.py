"""The committed locks (requirements/*.lock, `make lock`) agree with pyproject.toml and the Makefile:
every dependency pinned within its range and with a hash, the train lock on the runtime lock's versions
and on torch's CPU build. A pyproject.toml edit without `make lock` fails here, not on an air-gapped box."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def read_lock(name: str) -> dict[str, tuple[str, int]]:
    """{project: (version, number of hashes)}"""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def assert_pinned(requirements: list[str], pins: dict[str, tuple[str, int]], lock: str) -> None:
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/{lock}: run make lock"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{lock} pins {name}=={version}, outside pyproject.toml's {text!r}: run make lock"
        )


@pytest.mark.parametrize("lock", ["runtime.lock", "train.lock", "model.lock"])
def test_every_pin_has_a_hash(lock: str) -> None:
    pins = read_lock(lock)
    assert pins
    assert [name for name, (_, hashes) in pins.items() if hashes == 0] == []


def test_runtime_lock_pins_the_dependencies() -> None:
    assert_pinned(PROJECT["dependencies"], read_lock("runtime.lock"), "runtime.lock")


def test_train_lock_pins_the_train_extra_on_the_runtime_versions() -> None:
    train, runtime = read_lock("train.lock"), read_lock("runtime.lock")
    assert_pinned(PROJECT["dependencies"] + PROJECT["optional-dependencies"]["train"], train, "train.lock")
    assert {name: train[name][0] for name in runtime} == {name: version for name, (version, _) in runtime.items()}
    assert train["torch"][0].endswith("+cpu"), "train.lock must hold torch's CPU build (docs/air-gapped.md)"
    assert not [name for name in train if name.startswith("nvidia-")]


def test_model_lock_is_the_makefiles_default_model() -> None:
    default = re.search(r"^DEFAULT_MODEL := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert default is not None
    name, version = default.group(1).split("==")
    assert read_lock("model.lock") == {canonicalize_name(name): (version, 1)}
