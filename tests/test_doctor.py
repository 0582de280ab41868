"""`edge-assistant doctor` against real devices, a real broker and real model files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def doctor(config_path, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "edge_assistant.cli", "-c", str(config_path), "doctor"],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
    )
    return result.returncode, result.stdout


def write_config(tmp_path, broker, model, extra=""):
    path = tmp_path / "c.toml"
    path.write_text(
        f"[llm]\nmodel = '{model}'\n"
        f"[audio]\ninput_device = 'testmic'\noutput_device = 'testspk'\n"
        f"[mqtt]\nhost = '{broker.host}'\nport = {broker.port}\n{extra}"
        f"[service]\nstate_dir = '{tmp_path / 'state'}'\n"
    )
    return path


def test_healthy_device_passes_every_check(tmp_path, mosquitto, tiny_gguf, alsa_devices):
    code, out = doctor(write_config(tmp_path, mosquitto, tiny_gguf), alsa_devices.env)
    assert code == 0, out
    assert "all checks passed" in out
    assert "F32" in out and "testmic" in out and "testspk" in out
    assert "cancellation active (speex); echo path delay not measured yet" in out


def test_echo_check_reports_the_delay_the_service_measured(tmp_path, mosquitto, tiny_gguf, alsa_devices):
    from edge_assistant.audio.echo import EchoStatus, status_file, write_status

    write_status(status_file(tmp_path / "state"), EchoStatus(True, "speex", 123.4, 14.0))
    code, out = doctor(write_config(tmp_path, mosquitto, tiny_gguf), alsa_devices.env)
    assert code == 0, out
    echo = next(line for line in out.splitlines() if " echo " in line)
    assert echo.startswith("OK") and "echo path delay 123.4 ms, measured by the service" in echo


def test_echo_check_says_when_cancellation_is_off_or_cannot_run(tmp_path, mosquitto, tiny_gguf, alsa_devices):
    off = write_config(tmp_path, mosquitto, tiny_gguf).read_text().replace(
        "[audio]\n", "[audio]\necho_cancellation = false\n")
    (tmp_path / "off.toml").write_text(off)
    code, out = doctor(tmp_path / "off.toml", alsa_devices.env)
    assert code == 0 and "cancellation off" in out and "stricter barge-in threshold" in out
    # The WebRTC canceller needs its binding, which an empty site directory does not have.
    webrtc = off.replace("echo_cancellation = false", "echo_canceller = 'webrtc'")
    (tmp_path / "webrtc.toml").write_text(webrtc)
    (tmp_path / "shadow" / "pywebrtc_audio").mkdir(parents=True)
    (tmp_path / "shadow" / "pywebrtc_audio" / "__init__.py").write_text("raise ImportError('absent')\n")
    env = {**alsa_devices.env, "PYTHONPATH": f"{tmp_path / 'shadow'}:{os.environ.get('PYTHONPATH', '')}"}
    code, out = doctor(tmp_path / "webrtc.toml", env)
    assert code == 1, out
    echo = next(line for line in out.splitlines() if " echo " in line)
    assert echo.startswith("FAIL") and "pywebrtc-audio is not installed" in echo


def test_problems_are_listed_with_their_fixes(tmp_path, mosquitto_factory, alsa_devices):
    broker = mosquitto_factory(users={"pi": "right"}, anonymous=False)
    config = write_config(tmp_path, broker, tmp_path / "missing.gguf",
                          extra="username = 'pi'\npassword = 'wrong'\n")
    code, out = doctor(config, {"ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"})
    assert code == 1
    lines = out.splitlines()
    failed = {line.split()[1] for line in lines if line.startswith("FAIL")}
    assert failed == {"llm", "microphone", "speaker", "mqtt"}, out
    assert "missing.gguf" in out and "refused" in out
    assert sum(line.strip().startswith("fix:") for line in lines) == 4


def test_bad_config_is_reported_not_raised(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[llm]\nn_ctx = 'x'\n")
    code, out = doctor(path)
    assert code == 1 and "llm.n_ctx: must be an integer" in out


# --- a broker name that does not resolve ----------------------------------------------------


def test_name_fix_finds_what_is_wrong_with_the_hosts_file(tmp_path):
    from edge_assistant.doctor import name_fix

    hosts = tmp_path / "hosts"
    missing = name_fix("localhost", hosts)
    assert missing.startswith(f"{hosts} is missing (a root file system built by debootstrap has none)")
    assert "'127.0.0.1 localhost'" in missing and 'mqtt.host = "127.0.0.1"' in missing
    hosts.write_text("127.0.1.1 pi\n# 127.0.0.1 localhost\n")
    assert name_fix("localhost", hosts).startswith(f"{hosts} does not name localhost: add the line")
    hosts.write_text("127.0.0.1\tlocalhost\n")
    assert name_fix("localhost", hosts).startswith(f"localhost is in {hosts}: check the hosts line")
    assert name_fix("broker.lan", hosts) == \
        f"check the name (DNS, {hosts}), or set mqtt.host to the broker's IP address"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare, to hide /etc/hosts in a mount namespace of its own")
def test_doctor_on_a_root_file_system_without_etc_hosts(tmp_path, tiny_gguf):
    # As a debootstrap image boots: /etc without hosts, the default mqtt.host = "localhost".
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True)
    (etc / "hosts").unlink()
    config = tmp_path / "c.toml"
    config.write_text(f"[llm]\nmodel = '{tiny_gguf}'\n[audio]\ninput_device = 'none'\n"
                      f"[service]\nstate_dir = '{tmp_path / 'state'}'\n")
    hide = 'mount --bind "$0" /etc && exec "$@"'
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", hide, str(etc),
         sys.executable, "-m", "edge_assistant.cli", "-c", str(config), "doctor"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["mqtt"])
    assert lines[at].startswith("FAIL") and "localhost:1883: localhost does not resolve: " in lines[at], lines[at]
    assert lines[at + 1].strip() == (
        "fix: /etc/hosts is missing (a root file system built by debootstrap has none): create it with "
        "the lines '127.0.0.1 localhost' and '::1 localhost', or set mqtt.host = \"127.0.0.1\"")
    assert Path("/etc/hosts").exists()  # the machine's own is untouched
