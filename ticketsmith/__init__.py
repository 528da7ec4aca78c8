"""ticketsmith: raw IT support text in, schema-valid JSON tickets out, with a small local LLM."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ticketsmith")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
