"""The network edge of ``irreid-edge serve``: which requests reach the routes, and what every answer carries.

An ASGI middleware in front of the FastAPI app, one rule per line of defence:
- **Host**: only names of this server (the bound address; ``localhost`` and the loopback literals
  on a loopback bind; any IP literal on a wildcard bind; plus ``--allow-host``). A web page that
  rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
- **Origin / Sec-Fetch-Site**: a browser request made by another site's page is refused (403), the
  page ``GET /`` opened by a link excepted: it holds no data.
- **Content-Type**: a body must be declared an image (``image/*``) or ``application/octet-stream``.
  A browser sends those cross-origin only after a CORS preflight, which this server never grants,
  so a foreign page cannot even deliver a ``text/plain`` or form body (no-preflight requests).
- **Headers on every answer**: nosniff, no framing (``frame-ancestors 'none'``, X-Frame-Options),
  no referrer, same-origin resource policy, and a CSP: the page may run only its own inline
  script and style (by hash) and talk only to this origin; every other answer may run nothing.
- **Access log**: one line per request (client, method, path without query, status, time); never
  the query or any header, so no token or camera name lands in it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["EdgeMiddleware", "HostRule", "page_csp"]

_BODY_TYPES = ("image/", "application/octet-stream")
_COMMON = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer"), (b"cross-origin-resource-policy", b"same-origin")]
_DATA_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_IMAGE_CSP = _DATA_CSP + b"; sandbox"


def page_csp(html: str) -> str:
    """The page's CSP: its inline <script> and <style> blocks by sha256, blob: thumbnails, this origin only."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                        for b in blocks) or "'none'"

    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
            "img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _host_name(value: str) -> str:
    """The host part of a Host header or an origin's netloc, lower-cased, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostRule:
    """Which Host header names this server answers to."""

    names: frozenset[str]
    any_ip: bool  # a wildcard bind (0.0.0.0, ::): reached by any of the machine's addresses

    @classmethod
    def for_bind(cls, host: str, allow: Iterable[str] = ()) -> HostRule:
        bound = _host_name(host)
        names = {bound, *(_host_name(a) for a in allow if a.strip())}
        wildcard = bound in ("0.0.0.0", "::", "")
        loopback = bound == "localhost" or (_is_ip(bound) and ipaddress.ip_address(bound).is_loopback)
        if loopback or wildcard:
            names |= {"localhost", "127.0.0.1", "::1"}
        return cls(frozenset(names), wildcard)

    def allows(self, host_header: str) -> bool:
        name = _host_name(host_header)
        return bool(name) and (name in self.names or (self.any_ip and _is_ip(name)))


class EdgeMiddleware:
    def __init__(self, app: Any, hosts: HostRule, csp_page: str, log: Callable[[str], None] | None) -> None:
        self.app, self.hosts, self.log = app, hosts, log
        self.csp_page = csp_page.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [0]
        path = scope.get("path", "")
        extra = self._headers_for(path)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in have)]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await _json(send_with_headers, *refusal)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            if self.log is not None:
                client = scope.get("client") or ("-", 0)
                self.log(f'{client[0]} "{scope.get("method", "")} {path}" {status[0] or "-"} '
                         f"{(time.perf_counter() - t0) * 1000:.1f} ms")

    def _headers_for(self, path: str) -> list[tuple[bytes, bytes]]:
        if path == "/":
            csp = self.csp_page
        elif (path.startswith("/gallery/") and path.endswith("/image")) or \
                (path.startswith("/events/") and "/thumbs/" in path):
            csp = _IMAGE_CSP
        else:
            csp = _DATA_CSP
        return [*_COMMON, (b"content-security-policy", csp)]

    def refusal(self, scope: dict[str, Any]) -> tuple[int, str] | None:
        """(status, one line) when the request must not reach the routes, else None."""
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        method = scope.get("method", "GET")
        host = headers.get("host", "")
        if not self.hosts.allows(host):
            return 421, (f"Host {host[:100]!r} does not name this server; use its address, or start serve with "
                         "--allow-host NAME for a name that reaches it (a reverse proxy's, say)")
        origin = headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1].rstrip("/").lower() != host.strip().lower():
            return 403, f"Origin {origin[:100]!r} is another site; this server answers its own page only"
        site = headers.get("sec-fetch-site", "")
        navigation = method == "GET" and scope.get("path") == "/" and headers.get("sec-fetch-mode") == "navigate"
        if site in ("cross-site", "same-site") and not navigation:
            return 403, f"a request from another site's page (Sec-Fetch-Site: {site}) is refused"
        if method in ("POST", "PUT", "PATCH"):
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype.startswith("multipart/"):
                return 415, ("send the image bytes as the raw request body (curl --data-binary @crop.jpg "
                             "-H 'Content-Type: image/jpeg'), not a multipart form")
            if not ctype.startswith(_BODY_TYPES):
                return 415, (f"Content-Type {ctype or 'missing'!r}: send the image with Content-Type image/jpeg, "
                             "image/png, ... or application/octet-stream (curl -H 'Content-Type: image/jpeg')")
        return None


async def _json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
