"""Upload the dashboards to a Grafana server through grafana-client (``vector-trainer dashboards push``).

Idempotent: each dashboard is saved by its fixed uid with ``overwrite`` (a second
push updates the same dashboards, Grafana bumps their versions), into a folder
that is created when missing.  Errors are one sentence naming what to fix; the
token never appears in them (it is replaced if a server echoes it back).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

DEFAULT_FOLDER = "vector-trainer"
PUSH_MESSAGE = "vector-trainer dashboards push"


class PushError(Exception):
    """Why the push stopped, fit to print."""


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    title: str
    url: str
    version: int | None


def folder_uid(title: str) -> str:
    """A folder uid derived from its title (Grafana allows letters, digits, '-' and '_', at most 40)."""
    uid = re.sub(r"[^A-Za-z0-9_-]+", "-", title.strip()).strip("-").lower()[:40]
    return uid or DEFAULT_FOLDER


def safe_url(url: str) -> str:
    """``url`` without user:password@ (never echo credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class DashboardPusher:
    """Upserts dashboards into one folder of one Grafana."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        if not urlsplit(url).scheme.startswith("http") or not urlsplit(url).hostname:
            raise PushError(f"--url must be Grafana's address, e.g. http://localhost:3000 (got {safe_url(url)!r})")
        if not token:
            raise PushError("no token: give --token or set GRAFANA_TOKEN (a service-account token with the Editor role)")
        self.url = url.rstrip("/")
        self._token = token
        self.api = GrafanaApi.from_url(self.url, credential=token, timeout=timeout)

    def push(self, dashboards: Sequence[dict[str, Any]], folder: str = DEFAULT_FOLDER) -> list[Pushed]:
        uid = self._call(lambda: self._ensure_folder(folder))
        return [self._call(lambda d=d: self._save(d, uid)) for d in dashboards]

    # ----------------------------------------------------------------- steps
    def _ensure_folder(self, title: str) -> str:
        uid = folder_uid(title)
        try:
            self.api.folder.get_folder(uid)
            return uid
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
        try:
            created = self.api.folder.create_folder(title, uid=uid)
            return str(created.get("uid", uid)) if isinstance(created, dict) else uid
        except GrafanaClientError as exc:
            if exc.status_code not in (409, 412):
                raise
        # A folder of that title exists under another uid (made by hand): use it.
        for f in self.api.folder.get_all_folders() or []:
            if isinstance(f, dict) and f.get("title") == title and f.get("uid"):
                return str(f["uid"])
        raise PushError(f"Grafana refused to create folder {title!r} and no folder of that title is visible to this token")

    def _save(self, dashboard: dict[str, Any], folder: str) -> Pushed:
        body = {k: v for k, v in dashboard.items() if k != "id"}  # saved by uid, whatever id it has there
        body["id"] = None
        res = self.api.dashboard.update_dashboard(
            {"dashboard": body, "folderUid": folder, "overwrite": True, "message": PUSH_MESSAGE}
        )
        res = res if isinstance(res, dict) else {}
        return Pushed(uid=str(res.get("uid", body.get("uid"))), title=str(body.get("title")),
                      url=f"{self.url}{res.get('url', '')}", version=res.get("version"))

    def _call(self, fn: Any) -> Any:
        """Run one API step, turning the library's exceptions into a :class:`PushError` without the token."""
        where = safe_url(self.url)
        try:
            return fn()
        except PushError:
            raise
        except GrafanaUnauthorizedError:
            raise PushError(f"Grafana at {where} refused the token (401 Unauthorized): check --token / GRAFANA_TOKEN") from None
        except GrafanaTimeoutError:
            raise PushError(f"Grafana at {where} did not answer in time") from None
        except GrafanaClientError as exc:
            if exc.status_code == 403:
                raise PushError(f"Grafana at {where} denied the request (403): the token needs the Editor role") from None
            raise PushError(self._scrub(f"Grafana at {where} answered {exc.status_code}: {_message(exc)}")) from None
        except GrafanaException as exc:
            raise PushError(self._scrub(f"Grafana at {where} failed: {_message(exc)}")) from None
        except niquests.exceptions.RequestException as exc:
            raise PushError(self._scrub(f"cannot reach Grafana at {where}: {type(exc).__name__}")) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])[:300]
    return str(exc.message)[:300]
