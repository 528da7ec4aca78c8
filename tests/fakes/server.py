"""Run an ASGI app on 127.0.0.1 in a background thread for the length of a test."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ticketsmith.connectors.http_app import serve_in_thread


@contextmanager
def serve(app: Any) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = serve_in_thread(app, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop()
