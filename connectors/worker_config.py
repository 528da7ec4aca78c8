"""The worker's configuration: which sources to serve, where its state lives, the runtime to use.

Example `worker.yaml` (secrets come from the environment or files, never from this file):

    state_dir: /var/lib/ticketsmith
    # store: {url: postgresql://ticketsmith@db/ticketsmith, password: {env: TICKETSMITH_DB_PASSWORD}}
    runtime: {model_path: /opt/ticketsmith/models/tickets.Q4_K_M.gguf, n_threads: 4}
    # retry: {transient_budget_s: 86400, max_delay_s: 300}   # an ITSM outage is retried for a day
    # breaker: {failures: 5, max_pause_s: 300}                 # a failing source is paused, then probed
    inbox: {root: /var/lib/ticketsmith/tickets}
    jira:
      - base_url: https://example.atlassian.net
        email: triage-bot@example.com
        api_token: {env: JIRA_API_TOKEN}
        project: IT
        fields:
          category: {field: customfield_10050, shape: value}
          urgency: {field: priority, shape: name, values: {Critical: Highest, High: High, Medium: Medium, Low: Low}}
"""

from collections.abc import Iterator
from pathlib import Path
from types import GenericAlias
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from ticketsmith.connectors.circuit_breaker import BreakerSettings
from ticketsmith.connectors.http_contract import DEFAULT_MAX_BODY_BYTES
from ticketsmith.connectors.itsm import ItsmSettings, Secret
from ticketsmith.connectors.job_store import RetryPolicy
from ticketsmith.connectors.registry import connector_kinds
from ticketsmith.connectors.store_config import StoreSettings
from ticketsmith.runtime.yaml_config import load_with_overrides


class InboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path = Field(description="folder holding inbox/, outbox/, processed/, failed/")
    settle_s: float = Field(1.0, ge=0, description="seconds a file must stay unchanged before it is read")
    max_bytes: int = Field(1_000_000, ge=1)


class HttpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="0.0.0.0 to accept webhooks from other machines")
    port: int = Field(8080, ge=1, le=65535)
    api_tokens: list[Secret] = Field(default_factory=list, description="bearer tokens accepted by /v1/triage")
    # Checked before anything is parsed: a bigger body is refused (413) unread, with or without a token.
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, ge=1024, description="largest request body, for /v1/triage and webhooks alike"
    )


SettingsT = TypeVar("SettingsT", bound=ItsmSettings)


class ItsmSource(NamedTuple):
    kind: str
    position: int  # in its YAML list, from 0: `/webhooks/<kind>/<position>`
    settings: ItsmSettings


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(description="the job store (jobs.db) lives here")
    store: StoreSettings | None = Field(None, description="a shared PostgreSQL job store instead of jobs.db")
    runtime: dict[str, Any] = Field(default_factory=dict, description="runtime settings, as in a --config file")
    lease_s: float = Field(60.0, gt=0, description="a killed worker's ticket comes back after this long")
    poll_interval_s: float = Field(30.0, gt=0)
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="backoff, attempts, and how long transient failures are retried"
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings, description="when a failing ITSM source is paused, and how it is probed"
    )
    inbox: InboxSettings | None = None
    # ... and one list of sources per ITSM connector (`jira:`, `zoho_desk:`, ...): see `_with_itsm_lists`
    http: HttpSettings | None = None

    def itsm_sources(self) -> list[ItsmSource]:
        """Every ITSM source, connector by connector in registry order; webhooks address them so."""
        return [
            ItsmSource(kind.kind, position, settings)
            for kind in connector_kinds()
            for position, settings in enumerate(getattr(self, kind.config_key, []))
        ]

    def sources_of(self, settings_type: type[SettingsT]) -> list[SettingsT]:
        """The sources of one connector, typed: `config.sources_of(JiraSettings)`."""
        return [source.settings for source in self.itsm_sources() if isinstance(source.settings, settings_type)]

    def check_secrets(self) -> None:
        """Read every secret once, so that a missing one stops the worker before the model loads
        (under systemd's Restart=on-failure a later crash would become a restart loop)."""
        for secret in _secrets_in(self):
            secret.get()

    def secret_values(self) -> list[str]:
        """Every configured secret's value, for the log mask (call after `check_secrets`)."""
        return [secret.get() for secret in _secrets_in(self)]


def _secrets_in(value: object) -> Iterator[Secret]:
    if isinstance(value, Secret):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secrets_in(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)


def source_keys() -> list[str]:
    """The YAML keys that configure a source, for messages: `inbox`, `jira`, `zoho_desk`, ..."""
    return ["inbox", *(kind.config_key for kind in connector_kinds())]


def _with_itsm_lists(base: type[WorkerConfig]) -> type[WorkerConfig]:
    """`base` with one list per registered connector under its YAML key, made from the registry so
    that a new connector module needs no line here."""
    lists: dict[str, Any] = {
        kind.config_key: (GenericAlias(list, kind.settings), Field(default_factory=list, description=kind.title))
        for kind in connector_kinds()
    }
    return create_model(base.__name__, __base__=base, __module__=__name__, **lists)


_WORKER_CONFIG = _with_itsm_lists(WorkerConfig)


def load_worker_config(path: Path | None, **overrides: Any) -> WorkerConfig:
    return load_with_overrides(_WORKER_CONFIG, path, ("state_dir",), overrides)
