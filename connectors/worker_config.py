"""The worker's configuration: which sources to serve, where its state lives, the runtime to use.

Example `worker.yaml` (secrets come from the environment or files, never from this file):

    state_dir: /var/lib/ticketsmith
    runtime: {model_path: /opt/ticketsmith/models/tickets.Q4_K_M.gguf, n_threads: 4}
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

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.connectors.itsm import ItsmConnector
from ticketsmith.connectors.jira import JiraConnector, JiraSettings
from ticketsmith.connectors.servicedesk_plus import ServiceDeskPlusConnector, ServiceDeskPlusSettings
from ticketsmith.connectors.zoho_desk import ZohoDeskConnector, ZohoDeskSettings
from ticketsmith.runtime.yaml_config import load_with_overrides


class InboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root: Path = Field(description="folder holding inbox/, outbox/, processed/, failed/")
    settle_s: float = Field(1.0, ge=0, description="seconds a file must stay unchanged before it is read")
    max_bytes: int = Field(1_000_000, ge=1)


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(description="the job store (jobs.db) lives here")
    runtime: dict[str, Any] = Field(default_factory=dict, description="runtime settings, as in a --config file")
    lease_s: float = Field(60.0, gt=0, description="a killed worker's ticket comes back after this long")
    poll_interval_s: float = Field(30.0, gt=0)
    inbox: InboxSettings | None = None
    jira: list[JiraSettings] = Field(default_factory=list)
    zoho_desk: list[ZohoDeskSettings] = Field(default_factory=list)
    servicedesk_plus: list[ServiceDeskPlusSettings] = Field(default_factory=list)

    def connectors(self) -> list[ItsmConnector]:
        """One connector per configured ITSM system."""
        return [
            *(JiraConnector(s) for s in self.jira),
            *(ZohoDeskConnector(s) for s in self.zoho_desk),
            *(ServiceDeskPlusConnector(s) for s in self.servicedesk_plus),
        ]


def load_worker_config(path: Path | None, **overrides: Any) -> WorkerConfig:
    return load_with_overrides(WorkerConfig, path, ("state_dir",), overrides)
