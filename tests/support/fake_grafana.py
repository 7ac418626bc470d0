"""A loopback HTTP server that answers the part of Grafana's HTTP API ``dashboards push`` uses.

It checks requests the way Grafana does: a ``Bearer`` token on every call (401
otherwise), JSON bodies, a folder that exists for ``folderUid``, and a saved
dashboard's uid only replaced with ``overwrite: true`` (412 otherwise).  Every
request is recorded so tests can check paths, headers and payloads.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback_http import LoopbackServer


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: Any


@dataclass
class FakeGrafana(LoopbackServer):
    token: str
    requests: list[Request] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> folder
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {"dashboard", "folderUid", "version"}

    def __post_init__(self) -> None:
        self._ids = iter(range(1, 1_000_000))
        self._lock = threading.Lock()
        self._serve()

    @property
    def url(self) -> str:
        return self.origin

    # ----------------------------------------------------------------- plumbing
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        req = Request(method, h.path, h.headers.get("Authorization"), h.headers.get("Content-Type"), body)
        with self._lock:
            self.requests.append(req)
            status, payload = self._route(req)
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, req: Request) -> tuple[int, Any]:
        if req.authorization != f"Bearer {self.token}":
            return 401, {"message": "invalid API key", "traceID": ""}
        if req.method == "POST" and not (req.content_type or "").startswith("application/json"):
            return 415, {"message": "Content-Type must be application/json"}
        if req.method == "POST" and not isinstance(req.body, dict):
            return 400, {"message": "bad request data"}
        path = req.path.split("?", 1)[0]
        if req.method == "GET" and path == "/api/folders":
            return 200, [{"id": f["id"], "uid": uid, "title": f["title"]} for uid, f in self.folders.items()]
        if m := re.fullmatch(r"/api/folders/([^/]+)", path):
            folder = self.folders.get(m.group(1))
            if req.method == "GET":
                return (200, {**folder, "uid": m.group(1)}) if folder else (404, {"message": "folder not found", "status": "not-found"})
        if req.method == "POST" and path == "/api/folders":
            title, uid = req.body.get("title"), req.body.get("uid")
            if not isinstance(title, str) or not title:
                return 400, {"message": "folder title cannot be empty"}
            if uid is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
                return 400, {"message": "uid contains illegal characters"}
            if any(f["title"] == title for f in self.folders.values()) or uid in self.folders:
                return 409, {"message": "a folder with the same name already exists"}
            uid = uid or f"f{len(self.folders)}"
            self.folders[uid] = {"id": next(self._ids), "title": title}
            return 200, {"id": self.folders[uid]["id"], "uid": uid, "title": title, "url": f"/dashboards/f/{uid}/"}
        if req.method == "POST" and path == "/api/dashboards/db":
            return self._save(req.body)
        return 404, {"message": "Not found"}

    def _save(self, body: dict[str, Any]) -> tuple[int, Any]:
        d = body.get("dashboard")
        if not isinstance(d, dict) or not d.get("title") or not isinstance(d.get("panels"), list):
            return 400, {"message": "Dashboard title cannot be empty"}
        uid = d.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            return 400, {"message": "uid contains illegal characters"}
        folder = body.get("folderUid")
        if folder is not None and folder not in self.folders:
            return 400, {"message": "folder not found", "status": "not-found"}
        existing = self.dashboards.get(uid)
        if existing is not None and body.get("overwrite") is not True:
            return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
        if d.get("id") is not None and (existing is None or d["id"] != existing["id"]):
            return 404, {"message": "Dashboard not found", "status": "not-found"}
        version = existing["version"] + 1 if existing else 1
        did = existing["id"] if existing else next(self._ids)
        self.dashboards[uid] = {"dashboard": d, "folderUid": folder, "version": version, "id": did, "message": body.get("message")}
        slug = re.sub(r"[^a-z0-9]+", "-", d["title"].lower()).strip("-")
        return 200, {"id": did, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success", "version": version, "slug": slug}
