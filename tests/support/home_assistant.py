"""A real Home Assistant core for tests, run in the Debian 13 chroot that
scripts/home-assistant-env.sh prepares (HA needs Python >= 3.13; this machine has 3.11).

`HomeAssistant(root, port)` writes a fresh configuration inside the chroot, `start()`s HA
(sharing the host's network, so it reaches mosquitto on 127.0.0.1), onboards a user and adds the
MQTT integration through HA's own API, as a new user would. `rest()` calls the REST API,
`websocket()` the websocket API (with HA's own aiohttp, inside the chroot), `log()` reads
home-assistant.log. `stop()` ends HA and removes its configuration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from tests.support.timing import slack

REPO = Path(__file__).resolve().parents[2]
ENV_SCRIPT = REPO / "scripts" / "home-assistant-env.sh"
PASSWORD = "edge-assistant-test"

CONFIGURATION = """\
homeassistant:
  name: edge-assistant test
  time_zone: UTC
  latitude: 52.5
  longitude: 13.4
  elevation: 30
  unit_system: metric
  country: DE
  language: en
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
onboarding:
config:
automation: !include automations.yaml
logger:
  default: info
"""

# Runs inside the chroot: sends each message of the JSON list on stdin, prints the results.
WEBSOCKET_CLIENT = """
import asyncio, json, sys
import aiohttp

async def main(url, token, messages):
    results = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            await ws.receive_json()  # auth_required
            await ws.send_json({"type": "auth", "access_token": token})
            answer = await ws.receive_json()
            if answer["type"] != "auth_ok":
                raise SystemExit(f"websocket auth failed: {answer}")
            for number, message in enumerate(messages, 1):
                await ws.send_json({"id": number, **message})
                while (reply := await ws.receive_json())["id"] != number:
                    pass
                results.append(reply)
    print(json.dumps(results))

asyncio.run(main(sys.argv[1], sys.argv[2], json.load(sys.stdin)))
"""


class HomeAssistantError(AssertionError):
    pass


class HomeAssistant:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        name = f"edge-assistant-test-{uuid.uuid4().hex[:8]}"
        self.config_in_chroot = f"/srv/{name}"
        self.config_dir = root / "srv" / name
        self.process: subprocess.Popen | None = None
        self.token: str | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.config_dir.mkdir(parents=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        (self.config_dir / "automations.yaml").write_text("[]\n")
        self._output = open(self.config_dir / "stdout.log", "wb")
        # A mount namespace of its own: /proc for HA inside the chroot, gone when HA ends.
        # `exec` all the way, so the process is HA itself and its signals reach HA.
        command = (
            f'mount -t proc proc "{self.root}/proc" && exec chroot "{self.root}" '
            f"/opt/ha/bin/hass --config {self.config_in_chroot} --skip-pip --log-no-color"
        )
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", command],
            stdout=self._output, stderr=subprocess.STDOUT,
        )

    def wait_until_up(self, timeout: float = slack(180)) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HomeAssistantError(f"Home Assistant exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise HomeAssistantError(f"Home Assistant did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(slack(60))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self._output.close()
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def log(self) -> str:
        text = ""
        for name in ("stdout.log", "home-assistant.log"):
            path = self.config_dir / name
            if path.exists():
                text += f"--- {name}\n" + path.read_text(errors="replace")[-6000:]
        return text

    # -- what a new user does ---------------------------------------------------------------

    def onboard(self) -> None:
        """Create the owner through onboarding and log in with the code it returns."""
        client_id = f"{self.url}/"
        user = self.rest("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Test", "username": "test", "password": PASSWORD,
            "language": "en",
        })
        token = self._request("POST", "/auth/token", urllib.parse.urlencode({
            "grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id,
        }).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        self.token = json.loads(token)["access_token"]

    def add_mqtt(self, host: str, port: int) -> dict[str, Any]:
        """The MQTT integration, through its config flow (discovery is on by default)."""
        flow = self.rest("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            raise HomeAssistantError(f"unexpected MQTT flow: {flow}")
        entry = self.rest("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
                          {"broker": host, "port": port})
        if entry.get("type") != "create_entry" or entry["result"]["state"] != "loaded":
            raise HomeAssistantError(f"the MQTT integration was not set up: {entry}")
        return entry

    # -- APIs -------------------------------------------------------------------------------

    def rest(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        text = self._request(method, path, data, {"Content-Type": "application/json"})
        return json.loads(text) if text else None

    def _request(self, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> str:
        if self.token is not None:
            headers = {**headers, "Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=slack(30)) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise HomeAssistantError(f"{method} {path}: {error.code} {error.read().decode(errors='replace')}") from None
        return text

    def state(self, entity_id: str) -> dict[str, Any] | None:
        try:
            return self.rest("GET", f"/api/states/{entity_id}")
        except HomeAssistantError as error:
            if ": 404 " in str(error):
                return None
            raise

    def call(self, domain: str, service: str, **data: Any) -> Any:
        return self.rest("POST", f"/api/services/{domain}/{service}", data)

    def template(self, template: str) -> str:
        """`template` rendered by HA."""
        body = json.dumps({"template": template}).encode()
        return self._request("POST", "/api/template", body, {"Content-Type": "application/json"})

    def websocket(self, *messages: dict[str, Any], check: bool = True) -> list[dict[str, Any]]:
        """Send `messages` over one websocket connection (as HA's frontend does); their results,
        in order. With `check`, a failed command raises `HomeAssistantError`."""
        result = subprocess.run(
            ["chroot", str(self.root), "/opt/ha/bin/python", "-c", WEBSOCKET_CLIENT,
             f"ws://127.0.0.1:{self.port}/api/websocket", self.token],
            input=json.dumps(list(messages)), capture_output=True, text=True, timeout=slack(60),
        )
        if result.returncode != 0:
            raise HomeAssistantError(f"websocket client failed: {result.stderr}")
        replies = json.loads(result.stdout)
        failed = [reply for reply in replies if not reply.get("success", True)]
        if check and failed:
            raise HomeAssistantError(f"websocket commands failed: {failed}")
        return replies

    def wait_for_state(self, entity_id: str, predicate, timeout: float = slack(60), what: str = "") -> dict:
        """The entity's state object once `predicate(state)` holds."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state(entity_id)
            if state is not None and predicate(state):
                return state
            time.sleep(0.2)
        raise HomeAssistantError(f"{entity_id}: {what or 'condition'} not reached in {timeout:.0f} s; last {state}")
