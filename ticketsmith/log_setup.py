"""Logging for every command: one stderr handler, text or JSON lines, and secrets masked.

The worker's per-ticket lines (logger `ticketsmith.tickets`) show at INFO by default; other commands
stay at WARNING so that their stdout and stderr keep only what the user asked for. Secret values are
masked in the formatted line itself, so a library that logs a URL with a token in it (httpx logs
every request at INFO) cannot leak it whatever the level."""

import json
import logging
import sys
from collections.abc import Iterable
from typing import Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from ticketsmith.connectors.ticket_log import TICKET_LOGGER

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; no real token is that short
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Libraries that log every request at INFO: noise at INFO, kept for --log-level DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore")


class _Masking(logging.Formatter):
    """Formats with `inner`, then replaces every known secret (also as it reads JSON-escaped)."""

    def __init__(self, inner: logging.Formatter, secrets: set[str]) -> None:
        super().__init__()
        self.inner, self.secrets = inner, secrets

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, MASK).replace(json.dumps(secret)[1:-1], MASK)
        return line


class _TicketsmithHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again (tests run the CLI in-process) replaces it and nothing else."""


_secrets: set[str] = set()


def configure_logging(
    log_format: LogFormat = "text",
    level: LogLevel | None = None,
    ticket_lines: bool = False,
    stream: TextIO | None = None,
) -> None:
    """Install the handler on the root logger. `level` None: WARNING, with the per-ticket lines at INFO
    when `ticket_lines` (the worker); a given level applies to every logger, ticket lines included."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _TicketsmithHandler)]:
        root.removeHandler(handler)
    handler = _TicketsmithHandler(stream or sys.stderr)
    inner = JsonFormatter(JSON_FORMAT) if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(_Masking(inner, _secrets))
    root.addHandler(handler)
    root.setLevel(level or "WARNING")
    tickets = logging.getLogger(TICKET_LOGGER)
    tickets.setLevel(level or ("INFO" if ticket_lines else "WARNING"))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel("DEBUG" if level == "DEBUG" else "WARNING")


def mask_secrets(values: Iterable[str]) -> None:
    """From now on, these values never appear in a log line (the worker passes every configured secret)."""
    _secrets.update(value for value in values if len(value) >= MIN_SECRET_LENGTH)


def reset_logging() -> None:
    """Undo `configure_logging` and `mask_secrets`: remove our handler, put the levels it set back, and
    forget the masked values. For code that configures logging more than once in one process (tests)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _TicketsmithHandler)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    for name in (TICKET_LOGGER, *CHATTY_LOGGERS):
        logging.getLogger(name).setLevel(logging.NOTSET)
    _secrets.clear()
