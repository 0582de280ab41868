"""A local HTTP server that answers huggingface-hub's file requests, for `models pull` tests.

It speaks the part of the hub protocol that `hf_hub_download` uses: HEAD and GET on
`/<repo_id>/resolve/<revision>/<path>`, with `X-Repo-Commit`, an `ETag` that is the file's
sha256 (as the hub gives for LFS files), `Content-Length`, and byte ranges for resumed downloads.
A file can be served corrupted (its bytes changed after the ETag was computed), or cut off
mid-transfer once.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    content: bytes
    corrupt: bool = False
    # Cut the connection after this many bytes of the next full response (a flaky link).
    drop_after: int | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def served(self) -> bytes:
        if not self.corrupt:
            return self.content
        return bytes([self.content[0] ^ 0xFF]) + self.content[1:]


@dataclass
class FakeHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    endpoint: str = ""

    def add(
        self, repo_id: str, path: str, content: bytes, corrupt: bool = False, drop_after: int | None = None
    ) -> HubFile:
        hub_file = HubFile(content, corrupt, drop_after)
        self.files[(repo_id, path)] = hub_file
        return hub_file


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _lookup(self) -> HubFile | None:
            match = _RESOLVE.match(self.path.split("?")[0])
            if not match:
                return None
            return hub.files.get((match["repo"], match["path"]))

        def _headers(self, hub_file: HubFile, status: int, length: int, extra: dict) -> None:
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hub_file.sha256}"')
            self.send_header("X-Linked-Etag", f'"{hub_file.sha256}"')
            self.send_header("X-Linked-Size", str(len(hub_file.content)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()

        def _missing(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            hub.requests.append(("HEAD", self.path, None))
            hub_file = self._lookup()
            if hub_file is None:
                return self._missing()
            self._headers(hub_file, 200, len(hub_file.content), {})

        def do_GET(self) -> None:  # noqa: N802
            range_header = self.headers.get("Range")
            hub.requests.append(("GET", self.path, range_header))
            hub_file = self._lookup()
            if hub_file is None:
                return self._missing()
            body = hub_file.served()
            match = re.match(r"bytes=(\d+)-(\d*)", range_header or "")
            if match:
                start = int(match[1])
                end = int(match[2]) if match[2] else len(body) - 1
                part = body[start : end + 1]
                self._headers(
                    hub_file, 206, len(part), {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
                )
                self.wfile.write(part)
                return
            self._headers(hub_file, 200, len(body), {})
            if hub_file.drop_after is not None:
                self.wfile.write(body[: hub_file.drop_after])
                self.wfile.flush()
                hub_file.drop_after = None
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    return Handler


def start_hub() -> tuple[FakeHub, ThreadingHTTPServer]:
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return hub, server
