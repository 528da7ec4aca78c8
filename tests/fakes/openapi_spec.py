"""Check fake traffic against Atlassian's published OpenAPI spec of Jira Cloud REST v3.

The spec lives in ../shared/specs/jira/ (outside the repository); without it the checks are skipped
by the tests that need them. About 720 `example` values in it are JSON strings; only schemas are
used here, so that quirk does not matter."""

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "jira" / "swagger-v3.v3.json"


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def available() -> bool:
    return SPEC.is_file()


def _operation(operation_id: str) -> dict[str, Any]:
    for path_item in _spec()["paths"].values():
        for operation in path_item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return operation
    raise KeyError(operation_id)


def _validate(schema: dict[str, Any], instance: Any) -> list[str]:
    rooted = {**schema, "components": _spec()["components"]}
    return [error.message for error in Draft7Validator(rooted).iter_errors(instance)]


def request_errors(operation_id: str, body: Any) -> list[str]:
    schema = _operation(operation_id)["requestBody"]["content"]["application/json"]["schema"]
    return _validate(schema, body)


def response_errors(operation_id: str, status: int, body: Any) -> list[str]:
    content = _operation(operation_id)["responses"][str(status)].get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return _validate(schema, body) if schema else []
