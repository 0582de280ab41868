"""The daemon as a subprocess (`daemons(tmp_path, config_text, args, env)`), and a socket that
receives its sd_notify messages as systemd would (`notify_socket`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

class NotifySocket:
    """Collects sd_notify datagrams, as systemd would receive them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(path))
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.closed = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        while not self.closed:
            try:
                data = self.socket.recv(4096)
            except (socket.timeout, OSError):
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self) -> list[str]:
        return [line for _, line in self.messages]

    def wait_for(self, line: str, timeout: float = 180.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, seen in list(self.messages):
                if seen == line:
                    return at
            time.sleep(0.05)
        raise AssertionError(f"no {line!r} from the daemon; got {self.lines()[-10:]}")

    def close(self) -> None:
        self.closed = True
        self.thread.join()
        self.socket.close()


@pytest.fixture
def notify_socket(tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    yield notify
    notify.close()


class Daemon:
    def __init__(self, tmp_path: Path, config_text: str, args=(), env=None) -> None:
        self.config = tmp_path / "daemon.toml"
        self.config.write_text(config_text)
        self.log_path = tmp_path / "daemon.log"
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> "Daemon":
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_assistant.cli", "-c", str(self.config), "run", *self.args],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=self.env,
        )
        return self

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None:
            self.log_file.close()


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def make(*args, **kwargs) -> Daemon:
        daemon = Daemon(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
