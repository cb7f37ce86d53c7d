"""`opscockpit grafana push` against a stand-in for Grafana's HTTP API.

Grafana itself cannot be installed here; the stand-in answers the three calls
the command makes (list folders, create a folder, save a dashboard) the way
Grafana documents them, and records what it was sent.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.cli import main
from flows.cockpit.dashboards import dashboards
from tests.kafka_broker import free_port

TOKEN = "glsa_secret_token_value"


@dataclass
class FakeGrafana:
    url: str = ""
    prefix: str = ""
    folders: list[dict[str, str]] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)
    authorizations: set[str] = field(default_factory=set)
    refuse: int = 0  # when set, every call gets this status

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.refuse:
            return self.refuse, {"message": "invalid API key"}
        if not path.startswith(self.prefix + "/"):
            return 404, {"message": "not found"}  # Grafana under a sub-path serves it only
        path = path.removeprefix(self.prefix)
        if (method, path) == ("GET", "/api/folders"):
            return 200, self.folders
        if (method, path) == ("POST", "/api/folders"):
            folder = {"uid": f"folder{len(self.folders) + 1}", "title": body["title"]}
            self.folders.append(folder)
            return 200, folder
        if (method, path) == ("POST", "/api/dashboards/db"):
            self.saved.append(body)
            uid = body["dashboard"]["uid"]
            return 200, {"status": "success", "uid": uid, "url": f"{self.prefix}/d/{uid}/x"}
        return 404, {"message": "not found"}


def handler_for(grafana: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            grafana.authorizations.add(self.headers.get("Authorization", ""))
            status, answer = grafana.answer(method, self.path.split("?")[0], body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def serving(handler: Any) -> Iterator[str]:
    """An HTTP server on a free port for the test's length; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def grafana(request: pytest.FixtureRequest) -> Iterator[FakeGrafana]:
    fake = FakeGrafana(prefix=getattr(request, "param", ""))
    with serving(handler_for(fake)) as url:
        fake.url = url + fake.prefix
        yield fake


def push(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["grafana", "push", "--url", url, *extra])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)


@pytest.mark.parametrize("grafana", ["", "/grafana"], indirect=True)
def test_push_installs_every_dashboard_into_one_folder(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = push(grafana.url, capsys)
    assert status == 0, output
    assert grafana.authorizations == {f"Bearer {TOKEN}"}
    assert grafana.folders == [{"uid": "folder1", "title": "opscockpit"}]
    assert {body["dashboard"]["uid"] for body in grafana.saved} == set(dashboards())
    for body in grafana.saved:
        assert body["folderUid"] == "folder1"
        assert body["overwrite"] is True
        assert body["dashboard"]["id"] is None
        assert body["dashboard"] == {**dashboards()[body["dashboard"]["uid"]], "id": None}
    assert TOKEN not in output
    assert "installed 5 dashboards" in output


def test_push_again_reuses_the_folder(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    grafana.folders.append({"uid": "ops", "title": "Operations"})
    status, output = push(grafana.url, capsys, "--folder", "Operations")
    assert status == 0, output
    assert len(grafana.folders) == 1
    assert {body["folderUid"] for body in grafana.saved} == {"ops"}


@pytest.mark.parametrize(
    ("refuse", "says"),
    [
        (401, "refused the token (401)"),
        (403, "answered Client Error 403: invalid API key"),
        (500, "answered Server Error 500: invalid API key"),
    ],
)
def test_a_refusal_is_one_line_without_the_token(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str], refuse: int, says: str
) -> None:
    grafana.refuse = refuse
    status, output = push(grafana.url, capsys)
    assert status == 1
    assert output.endswith(f"{says}\n"), output  # the status, not a port that holds it
    assert output.count("\n") == 1 and "Traceback" not in output
    assert TOKEN not in output


def test_a_web_page_for_an_answer_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL that is not Grafana's (here a plain file server) answers with a page of
    HTML: the line says so, without the page."""
    files = functools.partial(QuietFiles, directory=str(tmp_path))
    with serving(files) as url:
        status, output = push(url, capsys)
    assert status == 1
    assert output.endswith(
        "answered Client Error 404: a web page, not Grafana's API (is the URL right?)\n"
    ), output
    assert output.count("\n") == 1


def test_an_unreachable_grafana_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, output = push(f"http://user:password@127.0.0.1:{free_port()}", capsys)
    assert status == 1
    assert "cannot reach Grafana at http://127.0.0.1:" in output
    assert "Connection refused" in output
    assert output.count("\n") == 1 and "password" not in output


def test_the_token_comes_from_the_named_variable(
    grafana: FakeGrafana, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN")
    status, output = push(grafana.url, capsys)
    assert status == 1 and "GRAFANA_TOKEN" in output
    monkeypatch.setenv("OPS_GRAFANA", "other-token")
    status, output = push(grafana.url, capsys, "--token-env", "OPS_GRAFANA")
    assert status == 0, output
    assert grafana.authorizations == {"Bearer other-token"}


def test_a_bad_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, output = push("grafana.example:3000", capsys)
    assert status == 1
    assert "not an http(s) URL" in output
