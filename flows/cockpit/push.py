"""Install the dashboards into a running Grafana through its HTTP API.

For a Grafana that is not provisioned from our files: the dashboards keep
their uids (so links between them work) and land in one folder, replacing
earlier versions. Errors come back as one line that never shows the token.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

TIMEOUT_SECONDS = 10.0
MAX_SAID = 200  # characters of an error answer quoted in the one line


class PushError(Exception):
    """Why the dashboards could not be installed, in one line."""


def public_url(url: str) -> str:
    """The URL without user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connect(url: str, token: str) -> Any:
    """A client for the Grafana at `url` (which may have a sub-path)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"not an http(s) URL: {public_url(url)}")
    if parts.path and not parts.path.endswith("/"):
        url = urlunsplit(parts._replace(path=parts.path + "/"))
    return GrafanaApi.from_url(url, credential=token, timeout=TIMEOUT_SECONDS)


def folder_uid(api: Any, title: str, where: str) -> str:
    """The uid of the folder with this title, created when missing."""
    folders = api.folder.get_all_folders()
    if not isinstance(folders, list):
        raise PushError(f"{where} does not answer like Grafana's HTTP API")
    for folder in folders:
        if folder.get("title") == title:
            return str(folder["uid"])
    return str(api.folder.create_folder(title)["uid"])


def push(url: str, token: str, folder: str, models: dict[str, dict[str, Any]]) -> list[str]:
    """Install every dashboard into `folder`, overwriting; returns their URLs."""
    where = public_url(url)
    try:
        api = connect(url, token)
        target = folder_uid(api, folder, where)
        urls = []
        for model in models.values():
            answer = api.dashboard.update_dashboard(
                {
                    "dashboard": {**model, "id": None},
                    "folderUid": target,
                    "overwrite": True,
                    "message": "opscockpit grafana push",
                }
            )
            urls.append(str(answer.get("url", model["uid"])))
    except GrafanaUnauthorizedError:
        raise PushError(f"Grafana at {where} refused the token (401)") from None
    except GrafanaTimeoutError:
        raise PushError(f"Grafana at {where} did not answer within {TIMEOUT_SECONDS:g} s") from None
    except (GrafanaClientError, GrafanaServerError) as exc:
        raise PushError(f"Grafana at {where} answered {brief(exc.message)}") from None
    except (GrafanaException, OSError) as exc:  # niquests' errors are OSErrors
        raise PushError(f"cannot reach Grafana at {where} ({reason(exc)})") from None
    return urls


def brief(message: str) -> str:
    """An error answer in one line: its status and Grafana's words, or, for a web
    page (not Grafana's API: a wrong URL or a proxy's page), just that."""
    status, _, said = message.partition(": ")
    said = " ".join(said.split())
    if said.startswith("<"):
        said = "a web page, not Grafana's API (is the URL right?)"
    elif len(said) > MAX_SAID:
        said = said[:MAX_SAID] + "..."
    return f"{status}: {said}" if said else status


def reason(exc: Exception) -> str:
    """The operating system's words for a failed connection, else the error's kind."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found.group(1).strip() if found else type(exc).__name__
