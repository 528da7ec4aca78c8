"""What every fake ITSM server shares: a call log, injected faults, and the auth check, as one middleware.

A Fault answers the next N calls that match its method and path with a status (and headers, and
optionally its own body), a malformed body, or a delay past the client's timeout."""

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass
class Fault:
    method: str
    path_pattern: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    malformed: bool = False
    delay_s: float = 0.0
    times: int = 1
    body: dict[str, Any] | None = None  # instead of the server's usual error body (e.g. an error inside a 200)


@dataclass
class FaultyServer:
    calls: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            self.calls.append((method, path))
            fault = next((f for f in self.faults if f.method == method and re.fullmatch(f.path_pattern, path)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault

    def install(
        self,
        app: FastAPI,
        unauthorized: Callable[[Request], Response | None],
        error_body: Callable[[int], dict[str, Any]],
    ) -> None:
        """Faults first, then `unauthorized(request)` (a response when the credentials are wrong)."""

        @app.middleware("http")
        async def faults_and_auth(request: Request, call_next: Any) -> Response:
            fault = self._take_fault(request.method, request.url.path)
            if fault is not None:
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                elif fault.malformed:
                    return Response("{not json", status_code=200, media_type="application/json")
                else:
                    body = fault.body if fault.body is not None else error_body(fault.status)
                    return JSONResponse(body, status_code=fault.status, headers=fault.headers)
            refused = unauthorized(request)
            if refused is not None:
                return refused
            response: Response = await call_next(request)
            return response
