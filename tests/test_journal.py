"""Log priorities for the journal: the formatter on its own, then the command line's output
through a real systemd-journald, connected the way systemd connects a service's stdout and
stderr, and read back with `journalctl -p`."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edge_assistant import journal

ROOT = Path(__file__).resolve().parent.parent
JOURNALD = next((p for p in (shutil.which("systemd-journald"), "/lib/systemd/systemd-journald",
                             "/usr/lib/systemd/systemd-journald") if p and Path(p).exists()), None)


def record(level: int, message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("edge_assistant.test", level, __file__, 1, message, None, exc_info)


# --- the formatter ------------------------------------------------------------------------


@pytest.mark.parametrize("level, expected", [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3),
    (logging.CRITICAL, 2), (logging.INFO + 5, 6), (5, 7),
])
def test_each_level_has_its_journal_priority(level, expected):
    assert journal.priority(level) == expected


def test_formatter_prefixes_every_line_of_a_record_and_its_traceback():
    formatter = journal.JournalFormatter(journal.LINE_FORMAT)
    assert formatter.format(record(logging.WARNING, "microphone missing")) == \
        "<4>WARNING edge_assistant.test: microphone missing"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failed = record(logging.ERROR, "stage failed\nsecond line", sys.exc_info())
    lines = formatter.format(failed).split("\n")
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines), lines
    assert lines[0] == "<3>ERROR edge_assistant.test: stage failed"
    assert lines[-1] == "<3>RuntimeError: boom"


def test_connected_only_when_journal_stream_names_this_stream(tmp_path):
    with open(tmp_path / "a", "w") as stream, open(tmp_path / "b", "w") as other:
        status = os.fstat(stream.fileno())
        this = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert journal.connected(stream, this)
        # systemd set it for a stream this one is not (StandardError= elsewhere, a redirection).
        assert not journal.connected(other, this)
        assert not journal.connected(stream, {})
        assert not journal.connected(stream, {"JOURNAL_STREAM": "junk"})
        # INVOCATION_ID says a unit runs it, not where its output goes.
        assert not journal.connected(stream, {"INVOCATION_ID": uuid.uuid4().hex})
    assert not journal.connected(io.StringIO(), this)


def test_plain_lines_when_not_under_systemd(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", "-c", str(tmp_path / "absent.toml"), "config", "check"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "JOURNAL_STREAM": "1:1", "INVOCATION_ID": uuid.uuid4().hex},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("edge-assistant: "), result.stderr


WHILE_PORTAUDIO_STARTS = """
import logging, sys
import sounddevice
from edge_assistant import journal
from edge_assistant.audio.devices import rescan_devices

journal.setup(logging.INFO)
log = logging.getLogger("edge_assistant.probe")
# sounddevice checks Pa_Initialize's result before it gives descriptor 2 back: a line logged
# there is logged while descriptor 2 is /dev/null, as another thread's line can be.
check = sounddevice._check
def check_and_log(error, message=""):
    if "initializing" in message:  # Pa_Initialize's, not Pa_Terminate's
        log.warning("speaker missing, retrying (logged while PortAudio starts)")
    return check(error, message)
sounddevice._check = check_and_log
if not rescan_devices():
    sys.exit("PortAudio was not restarted")
log.info("after the restart")
"""


def test_a_line_logged_while_portaudio_restarts_is_not_lost():
    # rescan_devices() runs on every retry of a missing microphone or speaker, in its thread;
    # in a booted container the daemon's "speaker missing" warning went to /dev/null this way.
    result = subprocess.run([sys.executable, "-c", WHILE_PORTAUDIO_STARTS],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "WARNING edge_assistant.probe: speaker missing, retrying (logged while PortAudio starts)" \
        in result.stderr.splitlines(), result.stderr
    assert "INFO edge_assistant.probe: after the restart" in result.stderr.splitlines()


# --- under a real journal -----------------------------------------------------------------


class Journal:
    """A systemd-journald of its own namespace (journald.conf(5), namespaces), so nothing of
    the machine's own journal is touched."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.socket_dir = Path(f"/run/systemd/journal.{namespace}")

    def stream(self, identifier: str) -> socket.socket:
        """A stream as systemd hands a service for StandardOutput=journal: level prefixes read."""
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(self.socket_dir / "stdout"))
        client.shutdown(socket.SHUT_RD)
        # identifier, unit, default priority, level prefix, forward to syslog, kmsg, console.
        client.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
        return client

    def run(self, identifier: str, command: list[str], **env: str) -> int:
        with self.stream(identifier) as stream:
            status = os.fstat(stream.fileno())
            environ = {**os.environ, **env, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
            return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=stream, stderr=stream,
                                  env=environ, timeout=120, cwd=ROOT).returncode

    def entries(self, identifier: str, until: str, *options: str) -> list[tuple[int, str]]:
        """(priority, message) of the identifier's entries, once one contains `until`."""
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                ["journalctl", f"--namespace={self.namespace}", "--no-pager", "-o", "json",
                 "-t", identifier, *options], capture_output=True, text=True, timeout=30)
            found = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
            entries = [(int(e["PRIORITY"]), e["MESSAGE"]) for e in found if isinstance(e.get("MESSAGE"), str)]
            if any(until in message for _, message in entries) or time.monotonic() > deadline:
                return entries
            time.sleep(0.2)


@pytest.fixture
def real_journal():
    if JOURNALD is None or shutil.which("journalctl") is None:
        pytest.skip("systemd-journald is not installed")
    if os.geteuid() != 0:
        pytest.skip("a journald namespace of its own needs root")
    namespace = f"edgetest{uuid.uuid4().hex[:12]}"
    process = subprocess.Popen([JOURNALD, namespace], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    handle = Journal(namespace)
    machine_id = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else ""
    try:
        deadline = time.monotonic() + 30
        while not (handle.socket_dir / "stdout").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"systemd-journald does not start here: {process.stderr.read() if process.poll() is not None else 'no socket'}")
            time.sleep(0.05)
        yield handle
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(handle.socket_dir, ignore_errors=True)
        for logs in ("/var/log/journal", "/run/log/journal"):
            if machine_id:
                shutil.rmtree(Path(logs) / f"{machine_id}.{namespace}", ignore_errors=True)


LOGS = """
import logging, threading
from edge_assistant import cli
cli.setup_logging("debug")
log = logging.getLogger("edge_assistant.probe")
log.debug("probe debug")
log.info("probe info")
log.warning("probe warning: microphone missing")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("probe error with its traceback")
worker = threading.Thread(target=lambda: {}["probe thread key"], name="probe-thread")
worker.start()
worker.join()
raise RuntimeError("probe uncaught")
"""


def test_journal_filters_the_cli_log_by_priority(real_journal):
    identifier = "edge-assistant-probe"
    assert real_journal.run(identifier, [sys.executable, "-c", LOGS]) == 1
    entries = real_journal.entries(identifier, "probe uncaught")
    priorities = {message: priority for priority, message in entries}
    assert priorities["DEBUG edge_assistant.probe: probe debug"] == 7
    assert priorities["INFO edge_assistant.probe: probe info"] == 6
    assert priorities["WARNING edge_assistant.probe: probe warning: microphone missing"] == 4
    assert priorities["ERROR edge_assistant.probe: probe error with its traceback"] == 3
    assert priorities["ZeroDivisionError: division by zero"] == 3
    assert priorities["ERROR edge_assistant: uncaught exception in thread probe-thread"] == 3
    assert priorities["KeyError: 'probe thread key'"] == 3
    assert priorities["CRITICAL edge_assistant: uncaught exception"] == 2
    assert priorities["RuntimeError: probe uncaught"] == 2
    # Every line of both tracebacks is in the journal's warning view, nothing below it is.
    warnings = real_journal.entries(identifier, "probe uncaught", "-p", "warning")
    assert {priority for priority, _ in warnings} == {2, 3, 4}
    assert "probe info" not in str(warnings) and "probe debug" not in str(warnings)
    traceback_lines = [m for _, m in entries if m.startswith(("Traceback", "  File "))]
    assert traceback_lines and all(m in {w for _, w in warnings} for m in traceback_lines)


def test_reload_with_a_broken_config_logs_a_warning_and_an_error(real_journal, tmp_path):
    # The unit's ExecReload= runs `edge-assistant reload`; its output goes to the journal too.
    config = tmp_path / "broken.toml"
    config.write_text("[llm]\nn_ctx = 'many'\n")
    identifier = "edge-assistant-reload"
    code = real_journal.run(identifier, [sys.executable, "-m", "edge_assistant.cli", "reload", "-c", str(config),
                                         "--socket", str(tmp_path / "absent.sock")])
    assert code == 1
    entries = real_journal.entries(identifier, "no running edge-assistant answers", "-p", "warning")
    assert any(p == 4 and "llm.n_ctx: must be an integer" in m for p, m in entries), entries
    assert any(p == 3 and m.startswith("edge-assistant: no running edge-assistant answers") for p, m in entries), entries


# --- under a real systemd ----------------------------------------------------------------

# In a mount namespace of its own, with /run and the journal's folder on fresh tmpfs: a
# systemd-journald and a systemd user manager (the manager wants /run/systemd/system, as on a
# booted machine), which run each command as a transient service (systemd-run), its stdout and
# stderr connected to the journal as for the real unit. The entries come back as JSON lines.
UNDER_SYSTEMD = r"""
set -eu
out=$1; shift
mount -t tmpfs tmpfs /run
mkdir -p /var/log/journal && mount -t tmpfs tmpfs /var/log/journal
mkdir -p /run/systemd/journal /run/systemd/system /run/user/0
/lib/systemd/systemd-journald & journald=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
export XDG_RUNTIME_DIR=/run/user/0
/lib/systemd/systemd --user >/dev/null 2>&1 & manager=$!
for _ in $(seq 100); do
  case $(systemctl --user is-system-running 2>/dev/null) in running|degraded) break ;; esac
  sleep 0.1
done
n=0
for command in "$@"; do
  n=$((n + 1))
  systemd-run --user --quiet --wait --collect --unit="edge-assistant-probe-$n" \
    -p Environment="PYTHONPATH=${PYTHONPATH:-}" /bin/sh -c "$command" || true
done
journalctl --no-pager -o json >"$out" 2>/dev/null || true
systemctl --user exit 2>/dev/null || true
kill $manager $journald 2>/dev/null || true
wait
"""

SYSTEMD = next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if Path(p).exists()), None)


def test_under_a_systemd_manager_the_journal_has_each_line_at_its_priority(tmp_path):
    if os.geteuid() != 0 or SYSTEMD is None or JOURNALD is None or shutil.which("unshare") is None \
            or shutil.which("systemd-run") is None:
        pytest.skip("needs root, unshare and systemd (its manager, journald and systemd-run)")
    config = tmp_path / "broken.toml"
    config.write_text("[llm]\nn_ctx = 'many'\n")
    probe = tmp_path / "probe.py"
    probe.write_text(LOGS)
    out = tmp_path / "entries.json"
    commands = [
        f"exec {sys.executable} -m edge_assistant.cli reload -c {config} --socket {tmp_path / 'absent.sock'}",
        f"exec {sys.executable} {probe}",
    ]
    result = subprocess.run(
        ["timeout", "120", "unshare", "--mount", "--propagation", "private", "sh", "-c", UNDER_SYSTEMD, "sh",
         str(out), *commands], capture_output=True, text=True, timeout=180, cwd=ROOT)
    entries = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    # journald names the unit from the process's cgroup: a user unit, or under a container
    # runtime that shows no user slice, a system one.
    found = [(int(entry["PRIORITY"]), entry["MESSAGE"]) for entry in entries
             if (entry.get("_SYSTEMD_USER_UNIT") or entry.get("_SYSTEMD_UNIT") or "").startswith("edge-assistant-probe")
             and isinstance(entry.get("MESSAGE"), str)]
    if not found:
        pytest.skip(f"no systemd user manager here: {result.stderr[-500:]}")
    priorities = dict((message, priority) for priority, message in found)
    assert priorities["WARNING edge_assistant: llm.n_ctx: must be an integer, got 'many'; "
                      "looking for the service where it runs by default"] == 4
    assert priorities[f"edge-assistant: no running edge-assistant answers: {tmp_path / 'absent.sock'}: "
                      "no such socket"] == 3
    assert priorities["INFO edge_assistant.probe: probe info"] == 6
    assert priorities["WARNING edge_assistant.probe: probe warning: microphone missing"] == 4
    assert priorities["ZeroDivisionError: division by zero"] == 3
    assert priorities["KeyError: 'probe thread key'"] == 3
    assert priorities["CRITICAL edge_assistant: uncaught exception"] == 2
    assert priorities["RuntimeError: probe uncaught"] == 2
    assert all(priority <= 4 for message, priority in priorities.items()
               if message.startswith(("Traceback", "  File ", "    ")))
