"""The ITSM systems the worker knows, each described by the one module that implements it.

A connector module ends with `CONNECTOR = ConnectorKind(...)`: its settings model (whose `kind` field
names it), how to build its connector, and how to read its webhook calls. The worker YAML's lists,
the worker's connectors and `/webhooks/<kind>/<n>` are all made from this table, so adding a system
is one module plus its name in `BUILT_IN`, and no other file names it."""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ticketsmith.connectors.itsm import ItsmConnector, ItsmSettings

if TYPE_CHECKING:  # webhooks.py looks connectors up here: a run-time import would be a cycle
    from ticketsmith.connectors.webhooks import WebhookCall, WebhookNews

SettingsT = TypeVar("SettingsT", bound=ItsmSettings)

# Modules of ticketsmith.connectors with a CONNECTOR, in the order their sources are listed and served.
BUILT_IN = ("jira", "jira_dc", "zoho_desk", "servicedesk_plus")


@dataclass(frozen=True)
class ConnectorKind(Generic[SettingsT]):
    """One ITSM system: what it is configured with, and the two things the worker builds from that."""

    config_key: str  # the worker YAML's list of these sources, e.g. `jira_data_center`
    title: str  # for people: "Jira Data Center / Server"
    settings: type[SettingsT]
    connector: Callable[[SettingsT], ItsmConnector]
    webhook: Callable[[SettingsT, "WebhookCall"], "WebhookNews"]

    @property
    def kind(self) -> str:
        """The settings' `kind` default: the name in source ids and webhook URLs."""
        return str(self.settings.model_fields["kind"].default)


@cache
def connector_kinds() -> tuple[ConnectorKind[Any], ...]:
    """Every known system, imported on first use (connector modules import this one)."""
    kinds = tuple(importlib.import_module(f"ticketsmith.connectors.{name}").CONNECTOR for name in BUILT_IN)
    for field in ("kind", "config_key"):
        names = [getattr(kind, field) for kind in kinds]
        if len(set(names)) != len(names):
            raise RuntimeError(f"two connectors share a {field}: {names}")
    return kinds


def connector_kind(kind: str) -> ConnectorKind[Any]:
    """The system whose settings say `kind: <kind>`."""
    for known in connector_kinds():
        if known.kind == kind:
            return known
    raise KeyError(f"no ITSM connector of kind {kind!r}")


def connector_for(settings: ItsmSettings) -> ItsmConnector:
    """The connector (poller and writer) for one configured source."""
    built: ItsmConnector = connector_kind(settings.kind).connector(settings)
    return built
