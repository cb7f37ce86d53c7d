"""`--web-config`: TLS and basic auth on every endpoint of the metrics port, in the
Prometheus exporter-toolkit format, with certificates from trustme; and a real
Prometheus scraping a running cockpit over TLS with basic auth, as the compose
stack's docker/prometheus/prometheus.secure.yml does."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import trustme
import yaml

from flows.cli import build_parser
from flows.exposition import Board
from flows.ledger import Ledger
from flows.metrics import METRICS
from flows.web import server as server_module
from flows.web.config import (
    CHECKS_PER_CLIENT,
    TooManyChecks,
    Users,
    WebConfig,
    WebConfigError,
    cost,
    load,
)
from flows.web.server import serve
from tests.kafka_broker import free_port
from tests.processes import cockpit, opscockpit, wait_for
from tests.test_cockpit_generated import DOCKER, compose, run, tool
from tests.test_cockpit_live import api as prometheus_api
from tests.test_cockpit_live import daemon
from tests.test_security import one_line_error
from tests.web import TRICKLE_BYTES, exchange, fetch, trickled

USER, PASSWORD = "prometheus", "correct horse battery staple"
PATHS = [
    "/",
    "/metrics",
    "/api/v1/summary",
    "/api/v1/items?limit=x",
    "/-/healthy",
    "/-/ready",
    "/static/cockpit.js",
    "/nowhere",
]


@dataclass
class Certs:
    directory: Path
    ca: trustme.CA
    client: trustme.LeafCert

    def trusting(self, **versions: ssl.TLSVersion) -> ssl.SSLContext:
        """A client context that trusts the test CA, within TLS `versions` if given."""
        context = ssl.create_default_context(cafile=self.directory / "ca.pem")
        for name, version in versions.items():
            setattr(context, name, version)
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost", "opscockpit")
    server.private_key_pem.write_to_path(str(directory / "key.pem"))
    server.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Certs(directory, ca, ca.issue_cert("client.example"))


def web_config(directory: Path, rounds: int = 4, **tls: str) -> Path:
    """A web-config with the test certificate, `tls` settings and the test user."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    config = {
        "tls_server_config": {"cert_file": "cert.pem", "key_file": "key.pem", **tls},
        "basic_auth_users": {USER: hashed},
        "http_server_config": {"headers": {"Strict-Transport-Security": "max-age=31536000"}},
    }
    path = directory / f"web-{len(tls)}-{'-'.join(tls.values())}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def secured(certs: Certs, **tls: str) -> Iterator[str]:
    """A board served in-process with `web_config(**tls)`; yields its https base URL."""
    with secured_server(certs, **tls) as (_server, base):
        yield base


@contextmanager
def secured_server(certs: Certs, **tls: str) -> Iterator[tuple[server_module.Server, str]]:
    """`secured`, yielding the server too."""
    board = Board()
    ledger = Ledger(METRICS)
    ledger["cockpit_units_on_hand"]["FC1"] = 5
    board.publish("test", ledger)
    board.ready.set()
    port = free_port()
    server = serve(board, "127.0.0.1", port, config=load(web_config(certs.directory, **tls)))
    try:
        yield server, f"https://127.0.0.1:{port}"
    finally:
        server.shutdown()


def test_nothing_answers_without_the_right_password(certs):
    with secured(certs) as base:
        context = certs.trusting()
        for path in PATHS:
            refusals = [
                fetch(base + path, context=context),
                fetch(base + path, USER, "wrong", context=context),
                fetch(base + path, "intruder", PASSWORD, context=context),
                fetch(base + path, USER, PASSWORD + "x" * 80, context=context),  # > 72 bytes
            ]
            for status, headers, _body in refusals:
                assert status == 401, path
                assert headers["WWW-Authenticate"].startswith('Basic realm="opscockpit"')
                assert headers["Strict-Transport-Security"] == "max-age=31536000"
            assert len({body for _status, _headers, body in refusals}) == 1, "says nothing more"
            status, headers, body = fetch(base + path, USER, PASSWORD, context=context)
            expected = {"/nowhere": 404, "/api/v1/items?limit=x": 400}.get(path, 200)
            assert status == expected, (path, body)
            assert headers["Strict-Transport-Security"] == "max-age=31536000"
        _status, _headers, body = fetch(base + "/api/v1/summary", context=context)
        assert json.loads(body) == {
            "status": "error",
            "errorType": "unauthorized",
            "error": "unauthorized",
        }
        data = json.loads(fetch(base + "/api/v1/settings", USER, PASSWORD, context=context)[2])
        assert data["data"]["web"] == {"tls": True, "basic_auth": True}


def test_one_tls_connection_carries_request_after_request(certs):
    """Keep-alive over TLS: one handshake for every poll, a refused one included."""
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with secured(certs) as base:
        host, port = base.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=certs.trusting())
        try:
            statuses, sockets = [], set()
            for auth in (True, False, True):
                headers = {"Authorization": f"Basic {token}"} if auth else {}
                conn.request("GET", "/api/v1/summary", headers=headers)
                response = conn.getresponse()
                response.read()
                statuses.append((response.version, response.status))
                sockets.add(id(conn.sock))
            assert statuses == [(11, 200), (11, 401), (11, 200)]
            assert len(sockets) == 1 and conn.sock is not None
        finally:
            conn.close()


def test_a_tls_connection_ends_with_its_close_notify(certs):
    """A client that reads an answer to the end sees a TLS close, not a cut: the
    server closed without its close_notify alert ("UNEXPECTED_EOF_WHILE_READING")."""
    request = b"GET /-/healthy HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    with secured(certs) as base:
        answer = exchange(base, request, certs.trusting())  # SSLEOFError at a cut
    assert answer.startswith(b"HTTP/1.1 401 ") and answer.endswith(b"}")


def test_a_silent_connection_to_the_tls_port_makes_room_for_a_new_one(certs, monkeypatch):
    """A connection to the TLS port that sent nothing was waited on twice (for its
    first byte, then for a handshake), 30 s each, and never made room: a few hundred
    locked every client out."""
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 1)
    with secured_server(certs) as (server, base):
        host, port = base.removeprefix("https://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as silent:
            wait_for(lambda: server.waiting, 30, "the connection waited on", 0.01)
            status, _headers, _body = fetch(base + "/-/healthy", USER, PASSWORD, certs.trusting())
            assert status == 200
            assert silent.recv(1) == b""  # closed for the new one


def test_an_idle_tls_connection_makes_room_for_a_new_one(certs, monkeypatch):
    """At the cap, a new client's connection takes the place of a kept-alive TLS
    connection waiting for its next request (closed under its TLS layer)."""
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 1)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with secured_server(certs) as (server, base):
        host, port = base.removeprefix("https://").split(":")
        kept = http.client.HTTPSConnection(host, int(port), timeout=10, context=certs.trusting())
        try:
            kept.request("GET", "/-/healthy", headers={"Authorization": f"Basic {token}"})
            assert kept.getresponse().read() is not None and kept.sock is not None
            wait_for(lambda: server.waiting, 30, "the connection idle", 0.01)
            status, _headers, _body = fetch(base + "/-/healthy", USER, PASSWORD, certs.trusting())
            assert status == 200
            assert kept.sock.recv(1) == b""  # its connection was closed for the new one
        finally:
            kept.close()


@pytest.mark.parametrize(
    ("server", "client"),
    [
        ({"min_version": "TLS13"}, {"maximum_version": ssl.TLSVersion.TLSv1_2}),
        ({"max_version": "TLS12"}, {"minimum_version": ssl.TLSVersion.TLSv1_3}),
    ],
    ids=["below the minimum", "above the maximum"],
)
def test_a_client_outside_the_tls_versions_is_refused(certs, server, client):
    with secured(certs, **server) as base:
        with pytest.raises(OSError):
            fetch(base + "/-/healthy", USER, PASSWORD, context=certs.trusting(**client))
        assert fetch(base + "/-/healthy", USER, PASSWORD, context=certs.trusting())[0] == 200


def test_plain_http_is_told_the_port_speaks_https_and_the_server_goes_on(certs):
    """As Go's servers (Prometheus' own) answer: a 400 saying so, not a reset
    connection (curl: "Recv failure"), and nothing else, with or without a password."""
    with secured(certs) as base:
        plain = base.replace("https://", "http://")
        for user in (USER, None):
            status, headers, body = fetch(plain + "/metrics", user, PASSWORD)
            assert status == 400 and headers["Content-Type"] == "application/json"
            assert headers["Strict-Transport-Security"] == "max-age=31536000"
            assert json.loads(body)["error"] == "this port speaks HTTPS"
            assert headers["Server"] == "opscockpit"  # once: a second would be joined
        assert fetch(base + "/metrics", USER, PASSWORD, context=certs.trusting())[0] == 200
        # Bytes that are neither a handshake nor a request: no answer at all.
        host, port = base.removeprefix("https://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"\x00\x01garbage\r\n\r\n")
            try:
                answer = b"".join(iter(lambda: conn.recv(65536), b""))
            except ConnectionResetError:  # closed with the bytes unread
                answer = b""
            assert answer == b""


def test_a_tls_hello_that_trickles_in_is_dropped_at_its_deadline(certs, monkeypatch):
    """The TLS handshake has one deadline in all (CPython's, from the socket's
    timeout), unlike a request's reads: a hello sent a byte at a time does not hold
    the connection and its thread past it."""
    monkeypatch.setattr(server_module, "TIMEOUT_S", 1.0)
    with secured(certs) as base:
        port = int(base.rsplit(":", 1)[1])
        answer, sent = trickled(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert answer == b"" and sent < TRICKLE_BYTES, (answer, sent)
        assert fetch(base + "/-/healthy", USER, PASSWORD, context=certs.trusting())[0] == 200


def test_client_certificates_when_the_config_requires_them(certs):
    certs.ca.cert_pem.write_to_path(str(certs.directory / "clients.pem"))
    with secured(
        certs, client_auth_type="RequireAndVerifyClientCert", client_ca_file="clients.pem"
    ) as base:
        with pytest.raises(OSError):
            fetch(base + "/-/healthy", USER, PASSWORD, context=certs.trusting())
        context = certs.trusting()
        certs.client.configure_cert(context)
        assert fetch(base + "/-/healthy", USER, PASSWORD, context=context)[0] == 200


def test_users_are_checked_against_bcrypt_hashes():
    users = Users({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))})
    assert users.check(USER, PASSWORD) and users.check(USER, PASSWORD)  # the second from cache
    assert not users.check(USER, PASSWORD.upper())
    assert not users.check("nobody", PASSWORD)
    assert not users.check(USER, "é" * 80)
    # An unknown user is checked against the decoy, whose password is in the source:
    # that it matches must not let them in.
    assert not users.check("nobody", "opscockpit decoy")
    assert not users.check("nobody", "opscockpit decoy")


def test_a_password_that_passed_is_not_checked_with_bcrypt_again(monkeypatch):
    users = Users({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))})
    calls = []
    checkpw = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append(a) or checkpw(*a))
    assert users.check(USER, PASSWORD) and users.check(USER, PASSWORD)
    assert len(calls) == 1, "the second from the cache"
    assert not users.check(USER, PASSWORD.upper()) and len(calls) == 2, "a wrong one is checked"


def test_bcrypt_checks_run_one_at_a_time(monkeypatch):
    """A burst of wrong passwords shared the cores among their checks, and a probe
    or a cached login waited a minute for a core: the checks queue instead."""
    users = Users({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))})
    running, most, lock = [0], [0], threading.Lock()
    checkpw = bcrypt.checkpw

    def counted(*args: bytes) -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)  # a check long enough for the others to start theirs
        try:
            return checkpw(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(bcrypt, "checkpw", counted)
    threads = [
        threading.Thread(target=users.check, args=(USER, f"wrong{n}", f"10.0.0.{n}"))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1


def test_requests_with_the_same_credentials_share_one_check(monkeypatch):
    """A page's first requests come together, each with the credentials not cached
    yet: one bcrypt check answers them all (they queued for one each)."""
    users = Users({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))})
    calls = []
    checkpw = bcrypt.checkpw

    def slow(*args: bytes) -> bool:
        calls.append(args)
        time.sleep(0.05)
        return checkpw(*args)

    monkeypatch.setattr(bcrypt, "checkpw", slow)
    answers: list[bool] = []
    threads = [
        threading.Thread(target=lambda: answers.append(users.check(USER, PASSWORD, "10.0.0.1")))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [True] * 6 and len(calls) == 1


@contextmanager
def checks_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """bcrypt checks that wait until the event is set (and then fail), until the end."""
    release = threading.Event()
    with monkeypatch.context() as patch:
        patch.setattr(bcrypt, "checkpw", lambda *_a: release.wait(30) and False)
        try:
            yield release
        finally:
            release.set()


def started(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def test_a_client_with_its_quota_of_checks_under_way_is_refused_more(monkeypatch):
    """One address guessing passwords queues at most CHECKS_PER_CLIENT checks; the
    same credentials again wait for theirs, and another address is not refused."""
    users = Users({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))})
    with checks_held(monkeypatch) as release:
        guesses = [started(users.check, USER, f"guess{n}", "a") for n in range(CHECKS_PER_CLIENT)]
        wait_for(lambda: users._clients.get("a") == CHECKS_PER_CLIENT, 30, "a's checks", 0.01)
        with pytest.raises(TooManyChecks):
            users.check(USER, "one more", "a")
        answers: dict[str, bool] = {}
        again = started(lambda: answers.update(again=users.check(USER, "guess0", "a")))
        other = started(lambda: answers.update(other=users.check(USER, "x", "b")))
        wait_for(lambda: users._clients.get("b") == 1, 30, "b's check", 0.01)
        release.set()
        for thread in (*guesses, again, other):
            thread.join()
    assert answers == {"again": False, "other": False}
    assert users._clients == {} and users._checks == {}
    assert users.check(USER, "one more", "a") is False  # the quota is back


def test_too_many_logins_from_one_address_get_a_429_and_the_rest_are_served(monkeypatch):
    board = Board()
    board.ready.set()
    port = free_port()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))
    server = serve(board, "127.0.0.1", port, config=WebConfig(users={USER: hashed}))
    base = f"http://127.0.0.1:{port}"
    try:
        users = server.get_app().users
        with checks_held(monkeypatch):
            for n in range(CHECKS_PER_CLIENT):
                started(fetch, f"{base}/-/healthy", USER, f"guess{n}")
            queued = lambda: users._clients.get("127.0.0.1") == CHECKS_PER_CLIENT  # noqa: E731
            wait_for(queued, 30, "the address's checks", 0.01)
            status, headers, body = fetch(f"{base}/api/v1/summary", USER, "one more")
        assert (status, headers["Retry-After"]) == (429, "1")
        error = json.loads(body)
        assert error["errorType"] == "too_many_requests"
        assert error["error"].startswith(f"{CHECKS_PER_CLIENT} logins from this address")
        # The held checks, released, end: then the address's quota is back.
        wait_for(lambda: not users._clients, 30, "the released checks to end", 0.01)
        assert fetch(f"{base}/-/healthy", USER, PASSWORD)[0] == 200
    finally:
        server.shutdown()


def test_basic_credentials_may_follow_more_than_one_space():
    """RFC 9110 11.4: `Basic` and the credentials are parted by one space or more
    (more were refused: base64 has no spaces)."""
    board = Board()
    board.ready.set()
    port = free_port()
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))
    server = serve(board, "127.0.0.1", port, config=WebConfig(users={USER: hashed}))
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    try:
        for header in (f"Basic {token}", f"Basic   {token}", f"basic  {token}"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/-/healthy", headers={"Authorization": header})
            assert conn.getresponse().status == 200, header
            conn.close()
    finally:
        server.shutdown()


def test_an_unknown_user_costs_one_bcrypt_check_like_a_wrong_password():
    """The decoy an unknown user is checked against is a well-formed hash at the
    highest cost of the real ones (a cheaper or malformed one would answer sooner,
    telling user names apart)."""
    hashes = {f"u{rounds}": bcrypt.hashpw(b"x", bcrypt.gensalt(rounds)) for rounds in (4, 6, 5)}
    users = Users(hashes)
    assert bcrypt.checkpw(b"opscockpit decoy", users.decoy)
    assert users.decoy.split(b"$")[2] == b"06" and cost(users.decoy) == 6
    assert cost(Users({USER: b"$2y$07$" + hashes["u4"][7:]}).decoy) == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: [", "is not YAML"),
        # YAML keeps the last: an empty second one turned authentication off.
        (
            'basic_auth_users: {u: "$2b$04$abcdefghijklmnopqrstuu5Ln2vAr3E3QDHsMvXK4kVG1eAfw8Tq"}'
            "\nbasic_auth_users:",
            "key 'basic_auth_users' is given twice (line 2)",
        ),
        ("basic_auth_users:\n  u: a\n  u: b", "key 'u' is given twice (line 3)"),
        ("- a list", "the file must be a mapping"),
        ("basic_auth: {}", "unknown key 'basic_auth' in the file"),
        ("basic_auth_users: {u: secret}", "the password of user 'u' is not a bcrypt hash"),
        ("basic_auth_users: {}", "basic_auth_users names no user"),  # served without auth
        ("basic_auth_users:", "basic_auth_users names no user"),
        ('basic_auth_users: {"": x}', "user '' cannot log in by basic auth"),
        ('basic_auth_users: {"a:b": x}', "user 'a:b' cannot log in by basic auth"),
        ("tls_server_config: {cert_file: cert.pem}", "needs cert_file and key_file"),
        ("tls_server_config: {cert_file: no.pem, key_file: key.pem}", "cannot load"),
        (  # OpenSSL read it for ever: the start hung
            "tls_server_config: {cert_file: /dev/zero, key_file: key.pem}",
            "cert_file /dev/zero is not a regular file",
        ),
        (  # OpenSSL says only "PEM lib"
            "tls_server_config: {cert_file: key.pem, key_file: cert.pem}",
            "cert_file key.pem holds no PEM certificate",
        ),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: ca.pem}",
            "key_file ca.pem holds no PEM key",
        ),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: key.pem, min_version: SSL3}",
            "min_version 'SSL3' is not one of TLS10, TLS11, TLS12, TLS13",
        ),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: key.pem, cipher_suites: []}",
            "cipher_suites is not supported",
        ),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: key.pem, "
            "client_auth_type: RequireAndVerifyClientCert}",
            "needs client_ca_file",
        ),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: key.pem, "
            "client_auth_type: RequireAnyClientCert}",
            "is not one of NoClientCert",
        ),
        ("http_server_config: {http2: true}", "http2 is not supported"),
        (
            "tls_server_config: {cert_file: cert.pem, key_file: key.pem, "
            "min_version: TLS13, max_version: TLS12}",
            "max_version TLS12 is below min_version TLS13",
        ),
        (
            'http_server_config: {headers: {X-Evil: "a\\r\\nSet-Cookie: injected=1"}}',
            "the value of header X-Evil has a control character",
        ),
        ('http_server_config: {headers: {X-A: "a\\nb"}}', "header X-A has a control"),
        ('http_server_config: {headers: {X-A: "a\\x00"}}', "header X-A has a control"),
        ('http_server_config: {headers: {X-A: "a\\x7f"}}', "header X-A has a control"),
        ('http_server_config: {headers: {X-A: "\\u20ac"}}', "header X-A has a control"),
        ('http_server_config: {headers: {"X-A\\r\\nX-B": b}}', "cannot be a configured header"),
        ('http_server_config: {headers: {"X A": b}}', "'X A' cannot be a configured header"),
        ('http_server_config: {headers: {"": b}}', "'' cannot be a configured header"),
        ("http_server_config: {headers: {X-A:: b}}", "'X-A:' cannot be a configured header"),
        ("http_server_config: {headers: {content-length: 0}}", "cannot be a configured header"),
        ("http_server_config: {headers: {Vary: Cookie}}", "'Vary' cannot be a configured"),
        ("http_server_config: {headers: {Date: x}}", "'Date' cannot be a configured header"),
        ("http_server_config: {headers: {Set-Cookie: a=1}}", "cannot be a configured header"),
    ],
)
def test_a_bad_web_config_says_what_is_wrong(certs, text, message):
    path = certs.directory / "bad.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError, match="^" + str(path)) as error:
        load(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_configured_header_replaces_the_server_s_own(tmp_path):
    """Sent once, with the configured value, whatever the case of its name."""
    path = tmp_path / "web.yml"
    headers = {"content-security-policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"}
    path.write_text(yaml.safe_dump({"http_server_config": {"headers": {**headers, "X-A": "b\tc"}}}))
    board = Board()
    port = free_port()
    server = serve(board, "127.0.0.1", port, config=load(path))
    try:
        for page in ("/", "/-/ready", "/nowhere"):
            _status, sent, _body = fetch(f"http://127.0.0.1:{port}{page}")
            assert sent["X-Content-Type-Options"] == "nosniff" and sent["X-A"] == "b\tc"
            policies = [v for k, v in sent.items() if k.lower() == "content-security-policy"]
            assert policies == ["default-src 'none'"], page
    finally:
        server.shutdown()


def test_a_bad_web_config_is_a_one_line_error_at_start(tmp_path):
    for path in (tmp_path / "missing.yml", tmp_path / "bad.yml"):
        (tmp_path / "bad.yml").write_text("basic_auth_users: {u: plain}")
        line = one_line_error(opscockpit("run", "--web-config", str(path), check=False))
        assert line.startswith("opscockpit: error: --web-config: ") and str(path) in line


# --- a running cockpit, scraped by a real Prometheus


def prometheus_config(directory: Path, port: int, certs: Certs) -> dict[str, Any]:
    """The compose stack's secure scrape job aimed at this cockpit, and the same job
    without the password."""
    shipped = yaml.safe_load((DOCKER / "prometheus" / "prometheus.secure.yml").read_text())
    job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "opscockpit")
    password = directory / "prometheus.password"
    password.write_text(PASSWORD)
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    job["tls_config"]["ca_file"] = str(certs.directory / "ca.pem")
    job["basic_auth"]["password_file"] = str(password)
    job["scrape_interval"] = "1s"
    anonymous = copy.deepcopy(job)
    anonymous["job_name"] = "without-password"
    del anonymous["basic_auth"]
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": [job, anonymous]}


@pytest.mark.prom
def test_prometheus_scrapes_over_tls_with_basic_auth_and_not_without(certs, tmp_path):
    context = certs.trusting()

    def probe(port: int) -> object:
        status = fetch(f"https://127.0.0.1:{port}/-/ready", USER, PASSWORD, context=context)[0]
        return status == 200 or None

    config = web_config(certs.directory, rounds=10)
    with cockpit("--backfill", "2h", "--web-config", str(config), probe=probe) as running:
        base = f"https://127.0.0.1:{running.port}"
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(prometheus_config(tmp_path, running.port, certs)))
        address = f"127.0.0.1:{free_port()}"
        command = [
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
        ]
        with daemon(command, f"http://{address}/-/ready", tmp_path / "prometheus.log"):
            prom = f"http://{address}"

            def up(job: str) -> list[str]:
                result = prometheus_api(prom, "query", query=f'up{{job="{job}"}}')["result"]
                return [sample["value"][1] for sample in result]

            wait_for(lambda: up("opscockpit") == ["1"], 60, "a scrape over TLS with the password")
            wait_for(lambda: up("without-password") == ["0"], 60, "a refused scrape")
            events = 'sum(cockpit_events_total{job="opscockpit"})'
            assert float(prometheus_api(prom, "query", query=events)["result"][0]["value"][1]) > 0
            targets = prometheus_api(prom, "targets")["activeTargets"]
            refused = next(t for t in targets if t["labels"]["job"] == "without-password")
            assert "401" in refused["lastError"]
        for path in ("/", "/api/v1/summary", "/metrics", "/-/ready"):
            assert fetch(base + path, context=context)[0] == 401
            assert fetch(base + path, USER, PASSWORD, context=context)[0] == 200
        status, _headers, body = fetch(base + "/api/v1/alerts", USER, PASSWORD, context=context)
        assert status == 200 and "alerts" in json.loads(body)["data"]


def test_the_secure_prometheus_config_is_the_plain_one_with_tls_and_auth():
    path = DOCKER / "prometheus" / "prometheus.secure.yml"
    plain = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    secure = yaml.safe_load(path.read_text())
    job = next(j for j in secure["scrape_configs"] if j["job_name"] == "opscockpit")
    assert job.pop("scheme") == "https"
    assert set(job.pop("tls_config")) == {"ca_file", "server_name"}
    assert job.pop("basic_auth")["password_file"].startswith("/etc/opscockpit/secure/")
    assert secure == plain
    # Its files exist only in the container: check everything else.
    run(tool("promtool"), "check", "config", "--syntax-only", str(path))


def test_the_secure_compose_overlay_adds_the_web_config_and_nothing_else():
    overlay_path = DOCKER / "compose.secure.yaml"
    run(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(overlay_path),
    )
    base, overlay = compose()["services"], yaml.safe_load(overlay_path.read_text())["services"]
    web = "--web-config=/etc/opscockpit/secure/web-config.yml"
    assert overlay["opscockpit"]["command"] == [*base["opscockpit"]["command"], web]
    assert build_parser().parse_args(overlay["opscockpit"]["command"]).web_config
    config = "--config.file=/etc/prometheus/prometheus.secure.yml"
    plain = [config if c.startswith("--config.file=") else c for c in base["prometheus"]["command"]]
    assert overlay["prometheus"]["command"] == plain
    for service in ("opscockpit", "prometheus"):
        assert overlay[service]["volumes"] == ["./secure:/etc/opscockpit/secure:ro"]
