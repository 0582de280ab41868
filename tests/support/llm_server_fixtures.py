"""A real llama-cpp-python server (`python -m llama_cpp.server`) on loopback, for the remote
backend tests: `llama_servers(model)` starts one per call; `scripted_server` serves the scripted
tiny GGUF (it answers ANSWER, over and over) for a whole module."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.mqtt_fixtures import free_port

ANSWER = "It is sunny. Bring a hat!"
SERVER_START_S = 60.0


class LlamaServer:
    """`python -m llama_cpp.server` on loopback; it can be killed and started again on its port."""

    def __init__(self, model: Path, log_path: Path, port: int | None = None) -> None:
        self.model = model
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LlamaServer":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
                 "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "1024",
                 "--n_threads", "1",
                 # The scripted model starts its script after a newline, where ChatML ends.
                 "--chat_format", "chatml"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"llama_cpp.server did not answer within {SERVER_START_S} s: {self.log()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def llama_servers(tmp_path):
    started: list[LlamaServer] = []

    def make(model: Path, port: int | None = None, start: bool = True) -> LlamaServer:
        server = LlamaServer(model, tmp_path / f"llama-server-{len(started)}.log", port)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def scripted_server(scripted_gguf, tmp_path_factory):
    server = LlamaServer(scripted_gguf, tmp_path_factory.mktemp("server") / "llama-server.log").start()
    yield server
    server.kill()
