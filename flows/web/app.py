"""The WSGI application of the metrics port (contract §7): /metrics, the wall
display at /, its JSON API under /api/v1/, and the probes /-/healthy and
/-/ready; with basic auth on every one of them when users are configured."""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from flows.exposition import GZIP_LEVEL, Board, render
from flows.web.api import Api, ApiError, kafka_up
from flows.web.config import CHECKS_PER_CLIENT, TooManyChecks, Users

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The page loads nothing but its own files, and no script inline.
PAGE_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'self'"),
    ("Referrer-Policy", "no-referrer"),
]
MIN_GZIP = 1024  # bytes of an answer worth compressing (a probe's is not)
REALM = 'Basic realm="opscockpit", charset="UTF-8"'

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]
Answer = tuple[str, Headers, bytes]
Handler = Callable[[dict[str, Any], str], Answer]


def _assets() -> dict[str, tuple[str, bytes]]:
    """The page's files by URL path, read once: small, and fixed for a release."""
    files = {f"/static/{p.name}": p for p in STATIC.iterdir() if p.suffix in TYPES}
    files["/"] = STATIC / "index.html"
    return {url: (TYPES[path.suffix], path.read_bytes()) for url, path in files.items()}


class App:
    """Routes a request; `__call__` is the WSGI entry point."""

    def __init__(
        self, board: Board, api: Api, users: Users | None, headers: Iterable[tuple[str, str]]
    ) -> None:
        self.board, self.api, self.users = board, api, users
        self.headers = list(headers)
        self.configured = {name.lower() for name, _value in self.headers}
        self.assets = _assets()
        self.fixed: dict[str, Handler] = {
            "/metrics": self.metrics,
            "/-/healthy": self.healthy,
            "/-/ready": self.readiness,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = url_text(environ, "PATH_INFO") or "/"
        status, headers, body = self.route(environ, path)
        if status == "200 OK":
            headers, body = compressed(environ, headers, body)
        start_response(status, [*self.merged(headers), ("Content-Length", str(len(body)))])
        # HEAD: the headers of GET, without its body (RFC 9110 9.3.2).
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def merged(self, headers: Headers) -> Headers:
        """An answer's headers and the configured ones, which replace any of the same name."""
        own = [*headers, ("X-Content-Type-Options", "nosniff"), ("Server", SERVER)]
        return [h for h in own if h[0].lower() not in self.configured] + self.headers

    def route(self, environ: dict[str, Any], path: str) -> Answer:
        """Credentials first (nothing, not even what exists, is told without them),
        then the resource (404), then the method (405)."""
        try:
            if self.users is not None and not self._authorized(environ):
                return json_error(
                    401, "unauthorized", "unauthorized", [("WWW-Authenticate", REALM)]
                )
        except TooManyChecks:
            message = f"{CHECKS_PER_CLIENT} logins from this address are being checked; retry"
            return json_error(429, "too_many_requests", message, [("Retry-After", "1")])
        handler = self.handler(path)
        if handler is None:
            return json_error(404, "not_found", f"nothing at {path}")
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            return json_error(405, "bad_data", "use GET or HEAD", [("Allow", "GET, HEAD")])
        return handler(environ, path)

    def handler(self, path: str) -> Handler | None:
        """What answers `path`; None: nothing."""
        if path in self.fixed:
            return self.fixed[path]
        if path.startswith("/api/v1/"):
            return self.json if path.removeprefix("/api/v1/") in self.api.routes else None
        return self.asset if path in self.assets else None

    def _authorized(self, environ: dict[str, Any]) -> bool:
        """Basic credentials that match a user; which part is wrong is never told."""
        assert self.users is not None
        scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            credentials = base64.b64decode(encoded.strip(" "), validate=True).decode()
            user, colon, password = credentials.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(colon) and self.users.check(user, password, environ.get("REMOTE_ADDR", ""))

    def healthy(self, _environ: dict[str, Any], _path: str) -> Answer:
        return "200 OK", _text(), b"opscockpit is healthy\n"

    def asset(self, _environ: dict[str, Any], path: str) -> Answer:
        content_type, body = self.assets[path]
        headers = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
        return "200 OK", headers + (PAGE_HEADERS if path == "/" else []), body

    def metrics(self, environ: dict[str, Any], _path: str) -> Answer:
        """The exposition; 503 until ready, so Prometheus records a failed scrape
        instead of counters that look reset while state is being restored."""
        if not self.board.ready.is_set():
            return "503 Service Unavailable", _text(), b"opscockpit is restoring its state\n"
        return "200 OK", [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)], render(self.board)

    def readiness(self, _environ: dict[str, Any], _path: str) -> Answer:
        """Ready once state is restored and input processed, while Kafka (if read) answers."""
        if not self.board.ready.is_set():
            return "503 Service Unavailable", _text(), b"opscockpit is restoring its state\n"
        if kafka_up(self.board.totals()) is False:
            return "503 Service Unavailable", _text(), b"Kafka is unreachable\n"
        return "200 OK", _text(), b"opscockpit is ready\n"

    def json(self, environ: dict[str, Any], path: str) -> Answer:
        try:
            data = self.api.answer(path.removeprefix("/api/v1/"), url_text(environ, "QUERY_STRING"))
        except ApiError as exc:
            return json_error(exc.status, exc.kind, str(exc))
        return "200 OK", _json_headers(), orjson.dumps({"status": "success", "data": data})


def compressed(environ: dict[str, Any], headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    """An answer gzipped for a client that accepts it, if it is worth it: a scrape,
    and the page's poll (the summary, ~20 KB in 4 KB for a day of the simulator;
    1.4 MB in 80 KB at the label cap), which went out as it was."""
    headers = [*headers, ("Vary", "Accept-Encoding")]  # a cache keeps both answers apart
    if len(body) < MIN_GZIP or not accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
        return headers, body
    return [*headers, ("Content-Encoding", "gzip")], gzip.compress(body, GZIP_LEVEL)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding allows gzip: named, or as `*`, with a weight above 0
    (RFC 9110 12.5.3: `gzip;q=0` refuses it). prometheus_client's `gzip_accepted`
    only looks for the word."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.lower()] = weight
    named = weights.get("gzip", weights.get("x-gzip"))  # x-gzip: gzip's old name
    return (weights.get("*", 0.0) if named is None else named) > 0


def _text() -> Headers:
    return [("Content-Type", "text/plain; charset=utf-8")]


def url_text(environ: dict[str, Any], name: str) -> str:
    """A part of the URL as the client wrote it: WSGI hands its bytes over as
    Latin-1 (PEP 3333), which showed `é` as `Ã©` and matched no fc named so."""
    text: str = environ.get(name, "")
    return text.encode("latin-1").decode("utf-8", "replace")


def _json_headers() -> Headers:
    return [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


SERVER = "opscockpit"  # no versions: wsgiref said WSGIServer/0.2 CPython/3.11.7


def json_error(code: int, kind: str, message: str, extra: Headers | None = None) -> Answer:
    """An error as Prometheus' API shapes one, on every path (as the server's own
    refusals of a bad request are), so that a client reads one shape."""
    body = orjson.dumps({"status": "error", "errorType": kind, "error": message})
    return f"{code} {HTTPStatus(code).phrase}", _json_headers() + (extra or []), body
