"""Zoho accounts OAuth 2.0 (self client): an access token from a long-lived refresh token.

Used by Zoho Desk and by ServiceDesk Plus Cloud, which signs in through Zoho accounts too. The token
is fetched on first use, renewed a minute before `expires_in` runs out, and renewed at once when the
API rejects it (Zoho answers 401 with `INVALID_OAUTH`). The refresh call is
`POST <accounts_url>/oauth/v2/token?refresh_token=...&client_id=...&client_secret=...&grant_type=refresh_token`;
Zoho reports a refused refresh as `{"error": "..."}`, sometimes with status 200."""

import logging
import threading
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import Secret

logger = logging.getLogger(__name__)


class ZohoOAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts_url: str = Field(
        "https://accounts.zoho.com", description="the data centre's accounts server: .com, .eu, .in, .com.au, ..."
    )
    client_id: str
    client_secret: Secret
    refresh_token: Secret


class ZohoOAuth:
    def __init__(
        self, settings: ZohoOAuthSettings, timeout_s: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._client = httpx.Client(timeout=timeout_s, transport=transport)
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or time.monotonic() > self._expires_at - 60:
                self._refresh()
            return {"Authorization": f"Zoho-oauthtoken {self._token}"}

    def renew(self) -> bool:
        """Called when the API rejected the token: fetch a new one (True when the request may be retried)."""
        with self._lock:
            self._refresh()
        return True

    def _refresh(self) -> None:
        params = {
            "refresh_token": self.settings.refresh_token.get(),
            "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret.get(),
            "grant_type": "refresh_token",
        }
        url = self.settings.accounts_url.rstrip("/") + "/oauth/v2/token"
        try:
            response = self._client.post(url, params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConnectorError(f"zoho accounts: token refresh failed: {type(exc).__name__}", transient=True) from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code >= 400 or not token:
            reason = body.get("error", response.status_code) if isinstance(body, dict) else response.status_code
            logger.error("zoho accounts refused the refresh token (%s): check client id, secret and token", reason)
            raise ConnectorError(f"zoho accounts: token refresh refused ({reason})", transient=True, status=401)
        self._token = str(token)
        self._expires_at = time.monotonic() + float(body.get("expires_in", 3600))
