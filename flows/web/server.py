"""The HTTP(S) server of the metrics port, in daemon threads (standard library only).

With TLS, each connection's handshake runs in that connection's own thread, so a
slow or hostile client never holds up the others.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import io
import ipaddress
import math
import re
import select
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from io import BufferedIOBase
from typing import IO, Any, cast
from wsgiref.headers import Headers
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from flows.exposition import Board
from flows.settings import Settings
from flows.web.api import Api
from flows.web.app import SERVER, App, json_error
from flows.web.config import Users, WebConfig
from flows.web.history import History

TIMEOUT_S = 30.0  # a connection that sends nothing this long is closed
MAX_REQUEST_HEAD = 65536  # read of a plain HTTP request to the TLS port before the 400
ABSOLUTE_FORM = re.compile(r"https?://[^/?#]*(.*)", re.IGNORECASE | re.DOTALL)  # -> path
MAJOR_ONLY = re.compile(r"HTTP/(\d{1,10})")  # a version without a minor: HTTP/2, HTTP/3
# Host: uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): an IP literal or a reg-name.
HOST = re.compile(r"(\[[0-9A-Za-z:._~%-]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")  # [zone]
MAX_CONNECTIONS = 1000  # served at once; more are closed unanswered
MAX_PER_ADDRESS = 250  # of them from one client (an address, or an IPv6 /64)
SLOW_CLIENT_S = 2.0  # a client mid-request or mid-answer this long may lose its place
MAX_EMPTY_LINES = 8  # skipped before a request line
ACCEPT_BACKOFF_S = 0.1  # between accepts while the process is out of file descriptors
MAX_HEADERS = 65536  # bytes of a request's headers (the standard library's bound: 6.4 MB)


def refusal(server: Any, code: int, message: str) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and body of a request refused before the app sees it: the app's
    JSON error with the app's headers, on a connection then closed."""
    app = server.get_app()
    assert isinstance(app, App)
    _status, headers, body = json_error(code, "bad_data", message)
    return [*app.merged(headers), ("Content-Length", str(len(body))), ("Connection", "close")], body


def client_key(host: str) -> str:
    """Whose connection it is: its address, or for IPv6 its /64 (a host commonly has
    a whole /64 to pick addresses from)."""
    if ":" not in host or "." in host:  # IPv4, or IPv4-mapped IPv6
        return host
    return str(ipaddress.IPv6Network((host.split("%", maxsplit=1)[0], 64), strict=False))


def end(connection: socket.socket) -> None:
    """End a connection its thread waits on: the thread sees the end and counts
    itself out (the socket's own shutdown, not TLS's close)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(connection, socket.SHUT_RDWR)


def unread(connection: socket.socket) -> bool:
    """Whether the client has sent bytes the connection has not read (or closed it);
    True for a connection its thread closed meanwhile."""
    poll = select.poll()
    try:
        poll.register(connection, select.POLLIN)
    except (ValueError, OSError):  # no descriptor any more
        return True
    return bool(poll.poll(0))


def body_framing_error(headers: Any) -> tuple[HTTPStatus, str] | None:
    """What RFC 9112 6 has a server refuse in a request's framing, though no route
    reads a body (and the connection closes after a request that has one): a
    Content-Length that is no number or two that differ, both framings at once,
    a Transfer-Encoding whose last coding is not chunked (400), and codings this
    server does not know (501). They were answered 200."""
    lengths = {
        length.strip()
        for value in headers.get_all("Content-Length", [])
        for length in value.split(",")
    }
    if len(lengths) > 1 or not all(length.isdigit() and length.isascii() for length in lengths):
        return HTTPStatus.BAD_REQUEST, "an invalid or conflicting Content-Length"
    codings = [
        coding.strip().lower()
        for value in headers.get_all("Transfer-Encoding", [])
        for coding in value.split(",")
    ]
    if not codings:
        return None
    if lengths:
        return HTTPStatus.BAD_REQUEST, "both Transfer-Encoding and Content-Length"
    if codings[-1] != "chunked":
        return HTTPStatus.BAD_REQUEST, "a Transfer-Encoding that does not end in chunked"
    unknown = [coding for coding in codings[:-1] if coding != "chunked"]
    if unknown:
        return HTTPStatus.NOT_IMPLEMENTED, f"Transfer-Encoding {unknown[0][:40]!r}"
    return None


class HeadersTooLarge(http.client.HTTPException):
    """Raised inside the standard library's header parser, which answers it with a 431."""


class _HeaderReader:
    """The connection's reader while the headers are parsed, which ends them after
    `MAX_HEADERS` bytes: the parser's own bounds (100 lines of 64 KiB) let one
    request hold 6.4 MB. It notes a bare CR within a line, which the parser took
    for a line's end (`X-A: b\\rHost: c` named a host a proxy in front saw no
    line of)."""

    def __init__(self, rfile: Any) -> None:
        self.rfile, self.left, self.bare_cr, self.folded = rfile, MAX_HEADERS, False, False

    def readline(self, limit: int = -1) -> bytes:
        most = self.left + 1 if limit < 0 else min(limit, self.left + 1)
        line: bytes = self.rfile.readline(most)
        self.left -= len(line)
        if self.left < 0:
            raise HeadersTooLarge(f"the headers are over {MAX_HEADERS} bytes")
        ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        self.bare_cr |= b"\r" in line[: len(line) - ending]
        self.folded |= line[:1] in (b" ", b"\t")  # obs-fold: a header continued
        return line


class _Answer(ServerHandler):
    """One answer, as HTTP/1.1, saying when its connection then closes (wsgiref's
    answered HTTP/1.0: every poll of the page and every scrape was a new connection,
    and with TLS a new handshake)."""

    http_version = "1.1"
    request_handler: _QuietHandler
    headers: Headers  # set by start_response (not in the stubs)

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        if self.request_handler.close_connection:
            self.headers["Connection"] = "close"

    def _write(self, data: bytes) -> None:
        handler = self.request_handler
        server = cast(Server, handler.server)
        server.wait_on(handler.connection, handler.client, SLOW_CLIENT_S)
        try:
            super()._write(data)
        finally:
            server.done_waiting(handler.connection)

    def handle_error(self) -> None:
        """An answer that failed may have been cut short: its connection ends with it.
        A client that stopped reading (a timeout) or broke off TLS is no error of the
        server's: a traceback for each let any client fill the log."""
        self.request_handler.close_connection = True
        if not isinstance(sys.exc_info()[1], TimeoutError | ssl.SSLError | ConnectionError):
            super().handle_error()


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each allowed only the time left until `deadline`: the
    socket's timeout bounds each read, so a client sending a byte every few seconds
    held a request (and its thread) open for as long as it liked."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.deadline = sock, math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no whole request within {TIMEOUT_S:g} s")
        self.sock.settimeout(min(left, TIMEOUT_S))
        return self.sock.recv_into(buffer)


class _QuietHandler(WSGIRequestHandler):
    timeout = TIMEOUT_S
    protocol_version = "HTTP/1.1"  # the parser keeps an HTTP/1.1 connection open
    raw_requestline: bytes  # read by handle() before parse_request (not in the stubs)
    server: WSGIServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket's own file: reads go through the deadline
        self.reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)
        self.client = client_key(self.client_address[0])

    def handle(self) -> None:
        """The requests of one connection in turn, until the client closes it or asks
        to, or sends a request with a body (which no route reads, so the next request
        could not be found), or an answer fails. Every answer has its Content-Length."""
        self.close_connection = True
        self.answer_one()
        while not self.close_connection:
            self.answer_one()

    def answer_one(self) -> None:
        """wsgiref's `handle`, for one request of several, with an HTTP/1.1 answer.
        A request's line and headers must all come within TIMEOUT_S of the
        connection or the previous answer (which is also how long an idle
        kept-alive connection stays open)."""
        self.reader.deadline = time.monotonic() + TIMEOUT_S
        server = cast(Server, self.server)
        server.wait_on(self.connection, self.client, 0)
        try:
            cast(io.BufferedReader, self.rfile).peek(1)  # idle until a request comes
            server.wait_on(self.connection, self.client, SLOW_CLIENT_S)
            if not self.read_head():
                return
        finally:
            server.done_waiting(self.connection)
        self.reader.deadline = math.inf
        self.connection.settimeout(TIMEOUT_S)  # for writing the answer
        # Connection is a list of options, in one header or several (RFC 9110 7.6.1):
        # `TE, close` (LWP, others) asks to close as `close` does; the parser
        # compared the first header's whole value only.
        options = {
            option.strip().lower()
            for value in self.headers.get_all("Connection", [])
            for option in value.split(",")
        }
        # A Content-Length of 0 announces no body: the next request follows at once.
        lengths = self.headers.get_all("Content-Length", [])
        body = "transfer-encoding" in self.headers or any(n.strip() != "0" for n in lengths)
        if body or "close" in options or self.request_version != "HTTP/1.1":
            self.close_connection = True
        answer = _Answer(
            self.rfile,
            cast(IO[bytes], self.wfile),
            self.get_stderr(),
            self.get_environ(),
            multithread=False,
        )
        answer.request_handler = self
        app = self.server.get_app()
        assert app is not None  # make_server set it
        answer.run(app)

    def read_head(self) -> bool:
        """The request's line and headers; False when there is no request to answer
        (the client closed the connection, or an error was sent). Empty lines before
        the request line are skipped, as RFC 9112 2.2 asks."""
        self.raw_requestline = b"\r\n"
        for _ in range(MAX_EMPTY_LINES):
            self.raw_requestline = self.rfile.readline(65537)
            if self.raw_requestline not in (b"\r\n", b"\n"):
                break
        if not self.raw_requestline:  # the client closed the connection
            self.close_connection = True
            return False
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        return self.parse_request()  # False: an error was sent

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and page polls are not worth a log line each."""

    def version_string(self) -> str:
        return SERVER

    def parse_request(self) -> bool:
        """What the standard library's parser got wrong, refused instead: an HTTP/0.9
        request (`GET /path`, or naming it) was answered with a bare body, no status
        line or headers (and without a version, after waiting for headers it has
        none of); `HTTP/2`, as that version is written, was a 400 (`HTTP/2.0` a
        505); a header line without a colon ended the headers (those after it were
        dropped) and the request was served; so was an HTTP/1.1 request without a
        Host header, or with two, which RFC 9112 3.2 has a server refuse (a proxy
        in front and this server could each take another as the request's host)."""
        words = str(self.raw_requestline, "iso-8859-1").split()  # as the parser splits it
        if len(words) in (2, 3):
            self.command = words[0]
            if len(words) == 2 or words[2] == "HTTP/0.9":
                self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/0.9 is not supported")
                return False
            major = MAJOR_ONLY.fullmatch(words[2])  # the parser's 505 wants a minor too
            if major and int(major[1]) >= 2:
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{words[2]} is not supported"
                )
                return False
        rfile, reader = self.rfile, _HeaderReader(self.rfile)
        self.rfile = cast(BufferedIOBase, reader)
        try:
            if not super().parse_request():
                return False
        finally:
            self.rfile = rfile
        if reader.folded:  # RFC 9112 5.2: refused, or each fold a space
            self.send_error(HTTPStatus.BAD_REQUEST, "a header folded over lines (obs-fold)")
            return False
        if self.headers.defects:  # a line that is no header: the parser took the rest as a body
            self.send_error(HTTPStatus.BAD_REQUEST, "a header line that is not name: value")
            return False
        if reader.bare_cr:  # RFC 9112 2.2: invalid, or each a space; not a line's end
            self.send_error(HTTPStatus.BAD_REQUEST, "a CR without its LF in the headers")
            return False
        framing = body_framing_error(self.headers)
        if framing is not None:
            self.send_error(*framing)
            return False
        hosts = self.headers.get_all("Host", [])
        if len(hosts) > 1 or not all(HOST.fullmatch(host.strip(" \t")) for host in hosts):
            self.send_error(HTTPStatus.BAD_REQUEST, "a request names one host, in one Host header")
            return False
        minor = int(self.request_version.partition(".")[2])  # the parser took HTTP/1.x only
        if not hosts and minor > 0:
            self.send_error(HTTPStatus.BAD_REQUEST, "an HTTP/1.1 request needs a Host header")
            return False
        # A target in absolute form (`GET http://host/-/healthy`), which every server
        # must take (RFC 9112 3.2.2), was looked up whole: a 404.
        absolute = ABSOLUTE_FORM.match(self.path)
        if absolute:
            self.path = absolute[1] if absolute[1].startswith("/") else f"/{absolute[1]}"
        return True

    def handle_expect_100(self) -> bool:
        """No 100 (Continue), which RFC 9110 10.1.1 lets a server omit: no route reads
        a body, so the answer comes at once and the connection closes after it. The
        parser sent one before the request was checked, even for one refused."""
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request refused before the app sees it (a line too long, too many
        headers, bad syntax) gets a JSON error with the app's headers, like every
        other error, not the standard library's HTML page. The parser's `explain`
        says more than its message ("got more than 100 headers": "Too many
        headers", which a header too large got too)."""
        said = explain or message or HTTPStatus(code).phrase
        headers, body = refusal(self.server, code, said)
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # a status line even when the version was bad
        self.send_response_only(code)  # the Server header is the app's
        self.send_header("Date", self.date_time_string())
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class Server(ThreadingWSGIServer):
    """prometheus_client's threading WSGI server, with TLS when given a context."""

    tls: ssl.SSLContext | None = None
    history_stop: threading.Event
    # socketserver's listen backlog is 5: a burst of new connections (a page's
    # reload by a room of displays, scrapers after a restart) overflowed it and
    # the kernel dropped SYNs, each retried after 1 s or more.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        if ":" in address[0]:  # an IPv6 address (`::` for all); names stay IPv4, as before
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.connections = 0  # open, each with its thread
        self.by_client: Counter[str] = Counter()
        # Connections waiting on their client, oldest first: its key, from when a new
        # connection may take its place, and whether it waits for a request (idle).
        self.waiting: dict[socket.socket, tuple[str, float, bool]] = {}
        self._counting = threading.Lock()
        self.closing = False  # shut down: no connection waits on its client any more

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection. Each open connection holds a thread, so there
        are at most MAX_CONNECTIONS, and at most MAX_PER_ADDRESS from one client.
        Past either, a connection waiting on its client may be closed to make room
        (`_make_room`); with none, the new one is closed unanswered. (Idle or
        trickling connections from one client locked every other client out.)"""
        client = client_key(client_address[0])
        with self._counting:
            own = self.by_client[client] >= MAX_PER_ADDRESS
            room = (not own and self.connections < MAX_CONNECTIONS) or self._make_room(client, own)
            if room:
                self.connections += 1
                self.by_client[client] += 1
        if not room:
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread: it will not count itself out
            self._count_out(client)
            raise

    def _make_room(self, client: str, own: bool) -> bool:
        """Close a connection that may lose its place, if there is one: past `client`'s
        own share, one of its own; else one of the client holding the most
        connections, either `client` or one that would still hold as many as
        `client` after (a client with many never takes the few of another, nor two
        clients each other's); of those, the one waiting on its client longest.
        Its thread sees the end and counts itself out. An idle connection with
        bytes unread is about to be busy, and keeps its place."""
        now, chosen, most, mine = time.monotonic(), None, -1, self.by_client[client]
        for connection, (of, since, idle) in list(self.waiting.items()):  # others change it
            held = self.by_client[of]
            if since > now or (of != client and (own or held <= mine + 1)):
                continue
            if held > most and not (idle and unread(connection)):
                chosen, most = connection, held
        if chosen is None or self.waiting.pop(chosen, None) is None:
            return False
        end(chosen)
        return True

    def wait_on(self, connection: socket.socket, client: str, grace: float) -> None:
        """Until `done_waiting`, the connection waits on its client (for a request,
        the rest of one, or to take an answer): a new connection may take its place
        after `grace` s (0: it waits for a request, idle). No lock: each change is
        one operation on a dict, and `_make_room` reads a copy."""
        self.waiting[connection] = (client, time.monotonic() + grace, not grace)
        if self.closing:
            end(connection)

    def done_waiting(self, connection: socket.socket) -> None:
        self.waiting.pop(connection, None)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._count_out(client_key(client_address[0]))

    def _count_out(self, client: str) -> None:
        with self._counting:
            self.connections -= 1
            self.by_client[client] -= 1
            if not self.by_client[client]:
                del self.by_client[client]

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS: the first byte (plain HTTP gets its 400), then the handshake, in
        TIMEOUT_S from the connection; each may lose its place to a new connection."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        deadline = time.monotonic() + TIMEOUT_S
        client = client_key(client_address[0])
        request.settimeout(TIMEOUT_S)
        try:
            self.wait_on(request, client, 0)
            try:
                first = request.recv(1, socket.MSG_PEEK)
            finally:
                self.done_waiting(request)
            if first.isalpha():
                self.refuse_plain_http(request)
                return
            secure = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return  # gone
        try:
            try:
                secure.settimeout(max(deadline - time.monotonic(), 0.001))
                self.wait_on(secure, client, SLOW_CLIENT_S)
                try:
                    secure.do_handshake()
                finally:
                    self.done_waiting(secure)
            except OSError:
                return  # no handshake: nothing can be answered
            super().finish_request(secure, client_address)
        finally:
            self.shutdown_request(secure)

    def shutdown_request(self, request: Any) -> None:
        """A TLS connection ends with its close_notify alert (RFC 8446 6.1): without
        it, a client reading to the end could not tell the end from a cut (OpenSSL 3,
        and Python's ssl without suppress_ragged_eofs: "unexpected EOF"). The
        client's own alert is not waited for."""
        if isinstance(request, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):  # no handshake, or gone
                request.setblocking(False)
                request.unwrap()
        super().shutdown_request(request)

    def refuse_plain_http(self, request: socket.socket) -> None:
        """A client that spoke plain HTTP to this TLS port (a TLS handshake starts with
        byte 0x16, a request with its method's letters) gets a 400 saying so, as Go's
        servers answer, rather than a reset connection."""
        try:
            request.recv(MAX_REQUEST_HEAD)  # read, so that closing does not reset it
            headers, body = refusal(self, HTTPStatus.BAD_REQUEST, "this port speaks HTTPS")
            head = ["HTTP/1.0 400 Bad Request", *(f"{name}: {value}" for name, value in headers)]
            request.sendall("\r\n".join([*head, "", ""]).encode() + body)
        except OSError:
            pass  # gone: nothing to answer

    def get_request(self) -> tuple[socket.socket, Any]:
        """A new connection. Out of file descriptors, accept fails at once while the
        connection waits: the accept loop spun a core until one was freed."""
        try:
            connection, address = super().get_request()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                time.sleep(ACCEPT_BACKOFF_S)
            raise
        # An answer goes out in two writes (head, body): under Nagle's algorithm the
        # body waited for the client's delayed ACK, ~40 ms a request kept alive.
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away or times out (an OSError) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def shutdown(self) -> None:
        """No new connection, and the open ones end as they next wait on their client:
        kept alive, a page's connection went on getting answers from a server shut
        down, and the page never showed it stale."""
        self.history_stop.set()
        super().shutdown()
        self.closing = True
        for connection in list(self.waiting):
            end(connection)


def serve(
    board: Board,
    host: str,
    port: int,
    *,
    settings: Settings | None = None,
    config: WebConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> Server:
    """Serve the board's metrics, page and API on host:port in daemon threads."""
    config = config or WebConfig()
    history = History(board, clock)
    web = {"tls": config.tls is not None, "basic_auth": bool(config.users)}
    api = Api(board, history, settings or Settings(), web)
    app = App(board, api, Users(config.users) if config.users else None, config.headers)
    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    assert isinstance(server, Server)
    server.tls, server.history_stop = config.tls, threading.Event()
    history.start(server.history_stop)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
