"""`--web-config FILE`: TLS and basic auth in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt      # paths relative to this file
      key_file: server.key
      min_version: TLS12         # TLS10 .. TLS13 (default TLS12)
      client_auth_type: RequireAndVerifyClientCert   # with client_ca_file
      client_ca_file: clients.pem
    basic_auth_users:
      prometheus: $2y$10$...     # bcrypt hashes
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}

The same file a node_exporter takes works here, except for the settings named
in UNSUPPORTED (refused, so that nothing is silently weaker than asked).
"""

from __future__ import annotations

import hashlib
import re
import ssl
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TOP_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
TLS_KEYS = {"cert_file", "key_file", "min_version", "max_version"}
TLS_KEYS |= {"client_auth_type", "client_ca_file"}
UNSUPPORTED = {
    "cert",
    "key",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "http2",
    "rate_limit",
}
_CACHE_SIZE = 256
# RFC 9110 5.1 and 5.5: a header name is a token; a value has no control
# character but tab (CR or LF would start another header), and is Latin-1 for WSGI.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Headers that describe each answer's body or exchange: never configured.
PER_ANSWER = {"content-length", "content-type", "content-encoding", "transfer-encoding"}
PER_ANSWER |= {"connection", "allow", "www-authenticate", "vary", "date"}
PER_ANSWER |= {"set-cookie", "location"}  # no answer here sets a cookie or redirects


class WebConfigError(Exception):
    """A bad --web-config file, in one line."""


@dataclass(frozen=True)
class WebConfig:
    """What the file asks for: a TLS context (None: plain HTTP), users, headers."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()


def load(path: Path) -> WebConfig:
    """Read and check a web-config file; every problem is a WebConfigError."""
    import yaml  # here: without a file, a start need not import it (~12 ms)

    class StrictLoader(yaml.SafeLoader):
        """YAML keeps the last of a key given twice: a second, empty
        `basic_auth_users` would silently turn authentication off (Prometheus'
        exporter-toolkit reads the file strictly, refusing it)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise WebConfigError(f"{path}: key {key!r} is given twice (line {line})")
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), StrictLoader)
    except OSError as exc:
        raise WebConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path} is not YAML: {' '.join(str(exc).split())}") from None
    data = {} if data is None else data
    top = _table(path, data, "the file", TOP_KEYS)
    where = path.parent
    tls = top.get("tls_server_config")
    http = _table(path, top.get("http_server_config") or {}, "http_server_config", {"headers"})
    headers = _table(path, http.get("headers") or {}, "headers", None)
    if "basic_auth_users" in top and not top["basic_auth_users"]:  # every page open
        raise WebConfigError(f"{path}: basic_auth_users names no user (remove it for none)")
    return WebConfig(
        tls=None if tls is None else _tls(path, where, tls),
        users=_users(path, top.get("basic_auth_users") or {}),
        headers=tuple(_header(path, str(k), str(v)) for k, v in headers.items()),
    )


def _header(path: Path, name: str, value: str) -> tuple[str, str]:
    """A header to send with every answer, refused if it could break or split one."""
    if not HEADER_NAME.fullmatch(name) or name.lower() in PER_ANSWER:
        raise WebConfigError(f"{path}: {name!r} cannot be a configured header")
    if not HEADER_VALUE.fullmatch(value):
        raise WebConfigError(f"{path}: the value of header {name} has a control character")
    return name, value


def _table(path: Path, data: Any, what: str, keys: set[str] | None) -> dict[str, Any]:
    """A mapping with only `keys` (any with None), or a one-line error naming the key."""
    if not isinstance(data, dict):
        raise WebConfigError(f"{path}: {what} must be a mapping")
    for key in data:
        if key in UNSUPPORTED:
            raise WebConfigError(f"{path}: {key} is not supported by opscockpit")
        if keys is not None and key not in keys:
            raise WebConfigError(f"{path}: unknown key {key!r} in {what}")
    return data


def _tls(path: Path, where: Path, data: Any) -> ssl.SSLContext:
    tls = _table(path, data, "tls_server_config", TLS_KEYS)
    if not tls.get("cert_file") or not tls.get("key_file"):
        raise WebConfigError(f"{path}: tls_server_config needs cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _version(path, tls, "min_version", "TLS12")
    if "max_version" in tls:
        context.maximum_version = _version(path, tls, "max_version", "TLS13")
        if context.maximum_version < context.minimum_version:
            raise WebConfigError(
                f"{path}: max_version {tls['max_version']} is below "
                f"min_version {tls.get('min_version', 'TLS12')}: no TLS version is left"
            )
    cert, key = (_regular(path, name, where / str(tls[name])) for name in ("cert_file", "key_file"))
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"{path}: cannot load {cert} and {key}: {_misplaced(cert, key) or _reason(exc)}"
        ) from None
    auth = str(tls.get("client_auth_type", "NoClientCert"))
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"{path}: client_auth_type {auth!r} is not one of {', '.join(CLIENT_AUTH)}"
        )
    context.verify_mode = CLIENT_AUTH[auth]
    if context.verify_mode != ssl.CERT_NONE:
        if not tls.get("client_ca_file"):
            raise WebConfigError(f"{path}: client_auth_type {auth} needs client_ca_file")
        ca = _regular(path, "client_ca_file", where / str(tls["client_ca_file"]))
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"{path}: cannot load {ca}: {_reason(exc)}") from None
    return context


def _regular(path: Path, name: str, file: Path) -> Path:
    """A file to load, refused if it is there but no regular file: OpenSSL read
    /dev/zero (or waited on a pipe) for ever, and the start hung without a word."""
    if file.exists() and not file.is_file():
        raise WebConfigError(f"{path}: {name} {file} is not a regular file")
    return file


def _misplaced(cert: Path, key: Path) -> str | None:
    """Which file holds the wrong PEM block (OpenSSL says only "PEM lib"), if one does."""
    for file, name, marker in (
        (cert, "cert_file", "CERTIFICATE-----"),
        (key, "key_file", "KEY-----"),
    ):
        try:
            text = file.read_text(encoding="ascii", errors="replace")
        except OSError:
            return None  # OpenSSL's reason says it
        if marker not in text:
            return f"{name} {file.name} holds no PEM {marker.removesuffix('-----').lower()}"
    return None


def _version(path: Path, tls: dict[str, Any], key: str, default: str) -> ssl.TLSVersion:
    name = str(tls.get(key, default))
    if name not in VERSIONS:
        raise WebConfigError(f"{path}: {key} {name!r} is not one of {', '.join(VERSIONS)}")
    return VERSIONS[name]


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc)


def _users(path: Path, data: Any) -> dict[str, bytes]:
    """The users of `basic_auth_users`, each a name basic auth can send (RFC 7617:
    not empty, and a colon would end it) with a bcrypt hash."""
    users = _table(path, data, "basic_auth_users", None)
    out = {}
    for user, hashed in users.items():
        if not str(user) or ":" in str(user):
            raise WebConfigError(f"{path}: user {user!r} cannot log in by basic auth")
        text = str(hashed or "").encode()
        try:
            bcrypt.checkpw(b"", text)
        except ValueError:
            raise WebConfigError(
                f"{path}: the password of user {user!r} is not a bcrypt hash"
            ) from None
        out[str(user)] = text
    return out


def cost(hashed: bytes) -> int:
    """The cost of a bcrypt hash (`$2b$12$...`: 12)."""
    return int(hashed.split(b"$")[2])


def decoy(hashes: Iterable[bytes]) -> bytes:
    """A hash checked for unknown users, at the highest cost of the real ones, so
    that a wrong user name takes as long as a wrong password: its time would tell
    user names apart. Made once per server (a cost-12 hash takes ~250 ms)."""
    rounds = max(map(cost, hashes), default=4)
    return bcrypt.hashpw(b"opscockpit decoy", bcrypt.gensalt(rounds=rounds))


class TooManyChecks(Exception):
    """A client address already has `CHECKS_PER_CLIENT` credential checks under way."""


CHECKS_PER_CLIENT = 4  # distinct credentials one client address may have checked at once


class _Check:
    """A bcrypt check under way; requests with the same credentials wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.matches = False


class Users:
    """Checks basic-auth credentials against bcrypt hashes.

    A bcrypt check costs ~50 ms by design; a page polling every few seconds and
    Prometheus scraping every 5 s would pay it each time, so the digests of
    credentials that passed are kept (as exporter-toolkit does), a bounded few.
    One check runs at a time: a hundred wrong passwords at once each took a core
    share, and a request that needs no check (a probe, a cached login) waited a
    minute for its own; now they queue, and only those wait. Requests with the
    same credentials share one check (a page's first requests come together), and
    a client address may have `CHECKS_PER_CLIENT` checks under way: one guessing
    passwords queues no more, so another's first login waits for at most those.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self.decoy = decoy(users.values())
        self._passed: OrderedDict[bytes, None] = OrderedDict()
        self._checks: dict[bytes, _Check] = {}  # under way, by credentials' digest
        self._clients: dict[str, int] = {}  # checks under way, by client address
        self._lock = threading.Lock()
        self._hashing = threading.Lock()

    def check(self, user: str, password: str, client: str = "") -> bool:
        """Whether the credentials match a user. TooManyChecks: `client` has its
        quota of checks under way, none of them of these credentials."""
        hashed = self.users.get(user)
        secret = password.encode()
        key = hashlib.sha256(b"\0".join((user.encode(), secret, hashed or b""))).digest()
        with self._lock:
            if key in self._passed:
                self._passed.move_to_end(key)
                return True
            shared = self._checks.get(key)
            if shared is None:
                if self._clients.get(client, 0) >= CHECKS_PER_CLIENT:
                    raise TooManyChecks
                self._checks[key] = mine = _Check()
                self._clients[client] = self._clients.get(client, 0) + 1
        if shared is not None:
            shared.done.wait()
            return shared.matches
        try:
            mine.matches = self._hash_check(secret, hashed)
            if mine.matches:
                with self._lock:
                    self._passed[key] = None
                    if len(self._passed) > _CACHE_SIZE:
                        self._passed.popitem(last=False)
        finally:
            with self._lock:
                del self._checks[key]
                self._clients[client] -= 1
                if not self._clients[client]:
                    del self._clients[client]
            mine.done.set()
        return mine.matches

    def _hash_check(self, secret: bytes, hashed: bytes | None) -> bool:
        """bcrypt's verdict, one check at a time (an unknown user's against the decoy)."""
        try:
            with self._hashing:
                matches = bcrypt.checkpw(secret, hashed or self.decoy)
        except ValueError:  # longer than bcrypt's 72 bytes
            return False
        return matches and hashed is not None
