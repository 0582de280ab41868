"""The running service's status socket, a Unix socket in its runtime directory, for people and
tools on the device itself: `edge-assistant status` asks it how the service and each of its
parts are, `edge-assistant reload` (the unit's ExecReload=) asks it to reload and waits for the
outcome, and `doctor` reports what it says.

A client connects, sends one JSON line, ``{"request": "status"}`` or ``{"request": "reload"}``,
and reads one JSON line back: the status (`device`, `state`, `pid`, `config`, `reload` and the
health payload: `problem`, `reason`, `parts`), or the reload's outcome (`ok`, `error`). Anyone
who may open the socket (the service user, root, the group edge-assistant) may ask for the
status; only the service's own user and root may ask for a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable

from .config import Config

log = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
# RuntimeDirectory= of the unit, where a client that is not the service looks first.
SYSTEM_RUNTIME_DIR = Path("/run/edge-assistant")
REQUESTS = ("status", "reload")
REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 4096
# A Unix socket path is at most 107 bytes.
MAX_PATH_BYTES = 107


class ServiceUnreachable(Exception):
    """No running service answers on any of the socket paths."""


class NotAllowed(ServiceUnreachable):
    """A socket is there, but this user may not open it (or the folder it is in)."""

    fix = ("run it with sudo, or join the group edge-assistant "
           "(sudo usermod -aG edge-assistant $USER, then log in again)")

    def __init__(self, paths: list[Path]):
        self.problem = f"may not ask the service on {', '.join(map(str, paths))} (permission denied)"
        super().__init__(f"{self.problem}: {self.fix}")


def server_path(config: Config) -> Path:
    """Where the service listens: service.status_socket, else $RUNTIME_DIRECTORY (systemd),
    else the state directory."""
    if config.service.status_socket:
        return Path(config.service.status_socket).expanduser()
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or config.state_dir()) / SOCKET_NAME


def client_paths(config: Config) -> list[Path]:
    """Where a client looks, in order: the service's own path as this process would compute it,
    then the unit's runtime directory (a person running the command has no $RUNTIME_DIRECTORY)."""
    paths = [server_path(config)]
    if not config.service.status_socket:
        paths.insert(1 if os.environ.get("RUNTIME_DIRECTORY") else 0, SYSTEM_RUNTIME_DIR / SOCKET_NAME)
    return list(dict.fromkeys(paths))


def ask(config: Config, request: str = "status", timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """The service's answer to `request` (blocking). Raises `ServiceUnreachable`, or
    `TimeoutError` when the service took the request and did not answer within `timeout`."""
    if request not in REQUESTS:
        raise ValueError(f"unknown request {request!r}")
    problems, denied = [], []
    for path in client_paths(config):
        try:
            if not path.exists():  # raises PermissionError in a folder this user may not enter
                problems.append(f"{path}: no such socket")
                continue
            return _ask(path, request, timeout)
        except TimeoutError:
            raise  # it answers, slowly: not a reason to ask elsewhere
        except PermissionError:
            denied.append(path)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: {error}")
    if denied:
        raise NotAllowed(denied)
    raise ServiceUnreachable("no running edge-assistant answers: " + "; ".join(problems))


def _ask(path: Path, request: str, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(json.dumps({"request": request}).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            answer += chunk
    if not answer.strip():
        raise ValueError("the service closed the connection without an answer")
    return json.loads(answer)


class StatusServer:
    """The service's end: `status()` gives the status, `reload()` reloads and gives the outcome
    (``{"ok": bool, "error": str}``); both run on the loop. `start()` never fails the service:
    a socket it cannot make is logged and left out."""

    def __init__(self, path: Path, status: Callable[[], dict[str, Any]],
                 reload: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.path = path
        self._status = status
        self._reload = reload
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> bool:
        if len(os.fsencode(self.path)) > MAX_PATH_BYTES:
            log.warning("status socket %s: the path is longer than %d bytes; `edge-assistant status` "
                        "cannot ask this service (set service.status_socket)", self.path, MAX_PATH_BYTES)
            return False
        try:
            if self.path.exists() or self.path.is_symlink():
                if await self._answers():
                    log.warning("status socket %s: another edge-assistant answers there; not taking it "
                                "over (set service.status_socket)", self.path)
                    return False
                self.path.unlink()  # left behind by a process that was killed
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._server = await asyncio.start_unix_server(self._serve, str(self.path))
            # Status for the group too (UMask=0077 gives 0600); reloads are checked by user.
            self.path.chmod(0o660)
            self._inode = self.path.stat().st_ino
        except OSError as error:
            log.warning("status socket %s: %s; `edge-assistant status` cannot ask this service", self.path, error)
            await self.aclose()
            return False
        log.info("status socket: %s", self.path)
        return True

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def _answers(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 1.0)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            answer = await self._answer(reader, writer)
            writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or never asked
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, Any]:
        line = await asyncio.wait_for(reader.readuntil(b"\n"), REQUEST_TIMEOUT_S)
        try:
            request = json.loads(line[:MAX_REQUEST_BYTES]).get("request")
        except (ValueError, AttributeError):
            request = None
        if request == "status":
            return self._status()
        if request == "reload":
            if not _may_reload(writer.get_extra_info("socket")):
                return {"ok": False, "error": "only the service's user and root may reload it"}
            return await self._reload()
        return {"error": f"unknown request; send one JSON line with \"request\": one of {', '.join(REQUESTS)}"}


def _may_reload(sock: Any) -> bool:
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                struct.calcsize("3i")))
    except (OSError, AttributeError):
        return False
    return uid in (0, os.getuid())
