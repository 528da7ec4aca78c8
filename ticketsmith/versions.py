"""`ticketsmith --version`: this package and the llama.cpp binding it runs on.

Read from the installed distributions' metadata, never by importing llama_cpp: that loads the native
library, which `--help` and `--version` must not pay for."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTIONS = ("ticketsmith", "llama-cpp-python")


def installed_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def version_line() -> str:
    """`ticketsmith 0.1.0, llama-cpp-python 0.3.36`"""
    return ", ".join(f"{name} {installed_version(name)}" for name in DISTRIBUTIONS)
