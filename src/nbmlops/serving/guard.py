"""What reaches the service and what it shows: the Host header and the bearer token checked
before any route runs, and errors and store addresses without paths or credentials."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

from fastapi.responses import JSONResponse

#: Paths open without the bearer token: a balancer's probes.
OPEN_PATHS = ("/health", "/ready")


class Guard:
    """ASGI middleware: the Host header must name this service, and a bearer token, when one is
    set, must come with every request but the probes. (Plain ASGI: Starlette's middleware
    decorator costs every request a task of its own.)"""

    def __init__(self, app, allowed_hosts, token: str | None):
        self.app, self.allowed_hosts, self.token = app, allowed_hosts, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refused = self.refusal(scope)
            if refused is not None:
                return await refused(scope, receive, send)
        return await self.app(scope, receive, send)

    def refusal(self, scope) -> JSONResponse | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]")
        if host not in self.allowed_hosts:
            return JSONResponse({"detail": "unknown Host header (serving.allowed_hosts)"},
                                status_code=400)  # fmt: skip
        token = self.token
        if token and scope["path"] not in OPEN_PATHS:
            sent = headers.get(b"authorization", b"")
            if not hmac.compare_digest(sent, f"Bearer {token}".encode()):
                return JSONResponse({"detail": "a bearer token is required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return None


_PATH = re.compile(r"(?:[a-z]+://)?/(?:[^\s'\"/:]+/)+")


def without_paths(text: str | None) -> str | None:
    """An error's text as anyone may see it: every absolute path cut to its last part (the
    service's log keeps the whole text)."""
    return _PATH.sub("…/", text) if text else text


def redact_uri(uri: str) -> str:
    """A store URI without credentials or local paths: what `/models` may show anyone."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme in ("", "file", "sqlite"):
        return f"{parts.scheme or 'file'}: …/{Path(parts.path).name}"
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
