"""The service unit and the installer: systemd's own checks on the unit, the installer's plan.

`systemd-analyze verify` and `systemd-analyze security --offline=yes` need no running systemd.
install.sh is exercised with --dry-run only (it changes nothing then); the platform it sees is
overridden through EDGE_ASSISTANT_INSTALL_* so the refusals can be checked on any machine.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "edge-assistant.service"
INSTALL = ROOT / "scripts" / "install.sh"
SCRIPTS = [
    INSTALL,
    ROOT / "scripts" / "setup.sh",
    ROOT / "scripts" / "llama-cmake-args.sh",
    ROOT / "scripts" / "arm64-check.sh",
    ROOT / "scripts" / "container-check.sh",
]
DOC = ROOT / "docs" / "deployment.md"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def runnable_copy(tmp_path: Path, text: str | None = None, extra: str = "") -> Path:
    """The unit, verbatim but for ExecStart's program, which points at a stub that exists.

    verify checks that the program is executable; the venv is not installed on a test machine.
    """
    text = UNIT.read_text() if text is None else text
    program = unit_settings(UNIT.read_text())["ExecStart"][0].split()[0]
    stub = tmp_path / "bin" / "edge-assistant"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    assert program in text
    copy = tmp_path / "edge-assistant.service"
    copy.write_text(text.replace(program, str(stub)) + extra)
    return copy


def verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )


def exposure(path: Path) -> float:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def documented_exposure(label: str) -> float:
    # docs/deployment.md states the scores on lines like "- Exposure, <label>: **1.5**".
    match = re.search(rf"Exposure, {label}: \*\*(\d+\.\d+)\*\*", DOC.read_text())
    assert match, f"docs/deployment.md states no exposure for {label}"
    return float(match.group(1))


def install(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("EDGE_ASSISTANT_INSTALL_") and k not in ("CMAKE_ARGS", "PYTHON")}
    environ.update(env)
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60, env=environ
    )


# Debian 12 and JetPack 6 ship systemd 252 and 249.
JETSON = dict(EDGE_ASSISTANT_INSTALL_ARCH="arm64", EDGE_ASSISTANT_INSTALL_JETSON="1",
              EDGE_ASSISTANT_INSTALL_OS_ID="ubuntu", EDGE_ASSISTANT_INSTALL_OS_VERSION="22.04",
              EDGE_ASSISTANT_INSTALL_GLIBC="2.35", EDGE_ASSISTANT_INSTALL_SYSTEMD="249")
X86 = dict(EDGE_ASSISTANT_INSTALL_ARCH="amd64", EDGE_ASSISTANT_INSTALL_JETSON="0",
           EDGE_ASSISTANT_INSTALL_OS_ID="debian", EDGE_ASSISTANT_INSTALL_OS_VERSION="12",
           EDGE_ASSISTANT_INSTALL_SYSTEMD="252")
PI = dict(EDGE_ASSISTANT_INSTALL_ARCH="arm64", EDGE_ASSISTANT_INSTALL_JETSON="0",
          EDGE_ASSISTANT_INSTALL_OS_ID="debian", EDGE_ASSISTANT_INSTALL_OS_VERSION="12",
          EDGE_ASSISTANT_INSTALL_SYSTEMD="252")
# Raspberry Pi OS Trixie: systemd 257.
PI_TRIXIE = {**PI, "EDGE_ASSISTANT_INSTALL_OS_VERSION": "13", "EDGE_ASSISTANT_INSTALL_SYSTEMD": "257"}
RELOAD = "/opt/edge-assistant/venv/bin/edge-assistant reload --config /etc/edge-assistant/edge-assistant.toml"


def dropin(platform: dict[str, str]) -> str:
    result = install("--show-dropin", **platform)
    assert result.returncode == 0, result.stderr
    return result.stdout


def unit_with_dropin(platform: dict[str, str]) -> str:
    # A drop-in's lines act as if appended to [Service] (the unit's last section is [Install]).
    text = UNIT.read_text()
    head, install_section = text.split("[Install]")
    return head + "\n".join(l for l in dropin(platform).splitlines() if l != "[Service]") + \
        "\n[Install]" + install_section


# --- the unit -------------------------------------------------------------------------------


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path):
    result = verify(runnable_copy(tmp_path))
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr


@needs_systemd_analyze
def test_unit_as_shipped_only_lacks_the_installed_program():
    # Verbatim, the one complaint allowed is the venv not being installed here.
    result = verify(UNIT)
    program = unit_settings(UNIT.read_text())["ExecStart"][0].split()[0]
    if Path(program).exists():
        assert result.returncode == 0, result.stderr
        return
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert complaints and all(f"Command {program} is not executable" in c for c in complaints), complaints


@needs_systemd_analyze
@pytest.mark.parametrize(
    "change",
    [
        ("Type=notify", "Type=notifyy"),  # an invalid value
        ("ProtectSystem=strict", "ProtectSystem=strictest"),
        ("WatchdogSec=30", "WatchdogSeconds=30"),  # an unknown key
        ("ExecReload=/opt/edge-assistant/venv/bin/", "ExecReload=/no/such/"),  # a program that is not there
        ("Restart=on-failure", "Restart=sometimes"),
    ],
)
def test_verify_catches_a_broken_unit(tmp_path, change):
    old, new = change
    text = UNIT.read_text()
    assert old in text
    result = verify(runnable_copy(tmp_path, text.replace(old, new)))
    assert result.returncode != 0 or (result.stdout + result.stderr).strip()


@needs_systemd_analyze
@pytest.mark.parametrize("platform", [X86, JETSON], ids=["x86_64", "jetson"])
def test_platform_dropins_verify(tmp_path, platform):
    result = verify(runnable_copy(tmp_path, unit_with_dropin(platform)))
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stderr


def test_dropins_per_platform():
    assert dropin(PI) == ""  # a Pi runs the unit as shipped
    assert "MemoryDenyWriteExecute=no" in dropin(X86)
    jetson = unit_settings(dropin(JETSON))
    assert jetson["SupplementaryGroups"] == ["video render"]
    assert jetson["DeviceAllow"] == [""] and jetson["DevicePolicy"] == ["auto"]
    assert "Type" not in jetson


def test_systemd_253_and_later_track_the_reload_themselves():
    settings = unit_settings(dropin(PI_TRIXIE))
    # The daemon's RELOADING=1 ... READY=1 is systemd's own protocol there; the unit's
    # ExecReload= still asks for the reload and reports a refused config, so systemd's
    # signal is one that changes nothing.
    assert settings == {"Type": ["notify-reload"], "ReloadSignal": ["SIGCONT"]}
    assert unit_settings(dropin({**X86, "EDGE_ASSISTANT_INSTALL_SYSTEMD": "253"}))["Type"] == ["notify-reload"]
    assert unit_settings(UNIT.read_text())["ExecReload"] == [RELOAD]


@needs_systemd_analyze
def test_exposure_is_at_most_the_documented_level():
    assert exposure(UNIT) <= documented_exposure("this unit")


@needs_systemd_analyze
@pytest.mark.parametrize("platform, label", [(X86, "x86_64"), (JETSON, "Jetson")])
def test_platform_exposure_is_at_most_the_documented_level(tmp_path, platform, label):
    copy = tmp_path / "edge-assistant.service"
    copy.write_text(unit_with_dropin(platform))
    assert exposure(copy) <= documented_exposure(f"with the {label} drop-in")


@needs_systemd_analyze
def test_exposure_parse_sees_a_weaker_unit(tmp_path):
    # The score parsed above moves when hardening goes: the check is not vacuous.
    weak = "\n".join(
        line for line in UNIT.read_text().splitlines()
        if not line.startswith(("ProtectSystem", "SystemCallFilter", "CapabilityBoundingSet"))
    )
    copy = tmp_path / "edge-assistant.service"
    copy.write_text(weak)
    assert exposure(copy) > exposure(UNIT) + 1.0


def test_unit_has_the_service_contract():
    settings = unit_settings(UNIT.read_text())
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "User": "edge-assistant",
        "SupplementaryGroups": "audio",
        "StateDirectory": "edge-assistant",
        "ConfigurationDirectory": "edge-assistant",
        "ExecReload": RELOAD,
        "RuntimeDirectory": "edge-assistant",
        "MemoryDenyWriteExecute": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "DevicePolicy": "closed",
        "DeviceAllow": "char-alsa rw",
    }.items():
        assert settings.get(key) == [value], key
    assert "StartLimitBurst" in settings and "StartLimitIntervalSec" in settings
    assert "TimeoutStopSec" in settings
    assert "HF_HUB_OFFLINE=1" in settings["Environment"][0].split()


def test_unit_and_installer_agree_on_paths():
    settings = unit_settings(UNIT.read_text())
    script = INSTALL.read_text()

    def constant(name: str) -> str:
        value = re.search(rf"^readonly {name}=(\S+)$", script, re.MULTILINE).group(1)
        return re.sub(r"\$(\w+)", lambda m: constant(m.group(1)), value)

    program, *arguments = settings["ExecStart"][0].split()
    assert program == constant("venv") + "/bin/edge-assistant"
    assert arguments == ["run", "--config", constant("config_file")]
    program, *arguments = settings["ExecReload"][0].split()
    assert program == constant("venv") + "/bin/edge-assistant"
    assert arguments == ["reload", "--config", constant("config_file")]
    assert settings["User"] == [constant("service_user")]
    assert constant("state_dir") == "/var/lib/" + settings["StateDirectory"][0]
    assert constant("config_dir") == "/etc/" + settings["ConfigurationDirectory"][0]
    assert settings["Documentation"] == ["file:" + constant("prefix") + "/docs/deployment.md"]


# --- the installer --------------------------------------------------------------------------


def test_scripts_parse():
    for script in SCRIPTS:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_are_shellcheck_clean():
    result = subprocess.run(
        ["shellcheck", "-x", *(str(s.relative_to(ROOT)) for s in SCRIPTS)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_lists_the_steps_and_changes_nothing():
    before = {p: p.exists() for p in map(Path, ("/opt/edge-assistant", "/etc/edge-assistant"))}
    result = install("--dry-run", "--model", "tinyllama-1.1b-chat-q4", "--voice",
                     "en_US-lessac-medium", "--stt", "vosk-model-small-en-us")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    numbered = re.findall(r"^install: \[(\d+)\] (.*)$", out, re.MULTILINE)
    steps = [step for _, step in numbered]
    assert [s.split()[0] for s in steps] == [
        "platform", "system", "service", "virtual", "config", "models", "systemd", "enable"
    ], steps
    assert [int(number) for number, _ in numbered] == list(range(1, len(steps) + 1))
    # docs/deployment.md numbers the same steps, in the same order.
    section = DOC.read_text().split("### What install.sh does")[1].split("\n## ")[0]
    documented = re.findall(r"^(\d+)\. \*\*(.+?)\*\*", section, re.MULTILINE)
    assert [int(number) for number, _ in documented] == list(range(1, len(steps) + 1)), documented
    assert documented[0][1].lower().startswith("platform"), documented
    assert "dry run" in out
    assert "/opt/edge-assistant/venv" in out
    for name in ("tinyllama-1.1b-chat-q4", "en_US-lessac-medium", "vosk-model-small-en-us"):
        if not Path("/var/lib/edge-assistant/models", name).exists():
            assert re.search(rf"^\+ runuser -u edge-assistant .* models pull --quiet {name}$", out, re.MULTILINE)
    if not Path("/etc/edge-assistant/edge-assistant.toml").exists():
        # A new config uses the models the install pulls.
        assert 'set: model = "tinyllama-1.1b-chat-q4"' in out
        assert 'set: voice = "en_US-lessac-medium"' in out
    assert {p: p.exists() for p in before} == before


def test_dry_run_on_a_jetson_builds_for_cuda_and_adds_the_gpu_dropin():
    result = install("--dry-run", **JETSON)
    assert result.returncode == 0, result.stderr
    assert "Jetson (supported)" in result.stdout
    assert "CMAKE_ARGS='-DGGML_CUDA=on'" in result.stdout
    if not Path("/etc/systemd/system/edge-assistant.service.d/platform.conf").exists():
        assert "edge-assistant.service.d/platform.conf" in result.stdout
    if not Path("/etc/edge-assistant/edge-assistant.toml").exists():
        assert "set: n_gpu_layers = -1" in result.stdout


def test_skip_llama_build_installs_everything_else():
    result = install("--dry-run", "--skip-llama-build")
    assert result.returncode == 0, result.stderr
    pip_lines = [line for line in result.stdout.splitlines() if " -m pip install" in line]
    if not pip_lines:
        pytest.skip("the venv on this machine is already installed and up to date")
    assert not any("llama" in line for line in pip_lines)
    assert any("vosk" in line and "piper-tts" in line for line in pip_lines)
    assert any("--no-deps" in line for line in pip_lines)


@pytest.mark.parametrize("arch", ["armhf", "armel"])
def test_refuses_32_bit_arm(arch):
    result = install("--dry-run", EDGE_ASSISTANT_INSTALL_ARCH=arch)
    assert result.returncode != 0
    assert "no onnxruntime wheels for piper on 32-bit ARM" in result.stderr
    assert "[1] platform" in result.stdout and "[2]" not in result.stdout  # refused at the first step


def test_refuses_old_glibc():
    result = install("--dry-run", EDGE_ASSISTANT_INSTALL_GLIBC="2.31")
    assert result.returncode != 0
    assert "the wake-word wheels need glibc >= 2.35" in result.stderr


def test_accepts_newer_glibc_and_64_bit_arm():
    result = install("--dry-run", EDGE_ASSISTANT_INSTALL_ARCH="arm64",
                     EDGE_ASSISTANT_INSTALL_GLIBC="2.41", EDGE_ASSISTANT_INSTALL_OS_ID="debian",
                     EDGE_ASSISTANT_INSTALL_OS_VERSION="13")
    assert result.returncode == 0, result.stderr
    assert "(supported)" in result.stdout


def test_unlisted_distribution_needs_force():
    env = {"EDGE_ASSISTANT_INSTALL_OS_ID": "ubuntu", "EDGE_ASSISTANT_INSTALL_OS_VERSION": "24.04",
           "EDGE_ASSISTANT_INSTALL_JETSON": "0"}
    refused = install("--dry-run", **env)
    assert refused.returncode != 0 and "not supported" in refused.stderr
    forced = install("--dry-run", "--force", **env)
    assert forced.returncode == 0, forced.stderr
    assert "not a supported one" in forced.stdout


def test_uninstall_dry_run_keeps_config_and_models_unless_purged():
    kept = install("--dry-run", "--uninstall")
    assert kept.returncode == 0, kept.stderr
    assert "rm -rf /etc/edge-assistant" not in kept.stdout
    assert "rm -rf /var/lib/edge-assistant" not in kept.stdout
    purged = install("--dry-run", "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    if Path("/var/lib/edge-assistant").exists():
        assert "rm -rf /var/lib/edge-assistant" in purged.stdout


def test_bad_options_are_refused():
    assert install("--model").returncode != 0
    assert install("--purge", "--dry-run").returncode != 0
    assert install("--no-such-option").returncode != 0


def cmake_args(machine: str, jetson: str = "0") -> str:
    environ = {k: v for k, v in os.environ.items() if k != "CMAKE_ARGS"}
    environ.update(LLAMA_MACHINE=machine, LLAMA_JETSON=jetson)
    result = subprocess.run(
        ["bash", "-c", 'source scripts/llama-cmake-args.sh && printf %s "$CMAKE_ARGS"'],
        cwd=ROOT, capture_output=True, text=True, env=environ, check=True,
    )
    return result.stdout


def test_llama_build_flags_per_platform():
    x86 = cmake_args("x86_64")
    assert x86.startswith("-DGGML_NATIVE=OFF") and "-march=native" not in x86
    assert cmake_args("aarch64", jetson="1") == "-DGGML_CUDA=on"
    if not Path("/etc/nv_tegra_release").exists() and shutil.which("nvcc") is None:
        assert cmake_args("aarch64") == ""  # a Pi keeps llama.cpp's defaults


@pytest.mark.parametrize("setting, command", [("ExecStart", "run"), ("ExecReload", "reload")])
def test_unit_command_lines_are_ones_the_cli_accepts(setting, command):
    from edge_assistant.cli import build_parser

    _program, *argv = unit_settings(UNIT.read_text())[setting][0].split()
    args = build_parser().parse_args(argv)
    assert args.command == command
    assert args.config == "/etc/edge-assistant/edge-assistant.toml"


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of this one but `missing` (a minbase chroot has no systemctl)."""
    bin_dir = tmp_path / "path"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = bin_dir / name
            if name not in missing and not link.exists() and os.access(os.path.join(folder, name), os.X_OK):
                link.symlink_to(os.path.join(folder, name))
    return str(bin_dir)


def test_install_without_systemctl_says_so_and_goes_on(tmp_path):
    path = path_without(tmp_path, "systemctl")
    assert shutil.which("systemctl", path=path) is None and shutil.which("bash", path=path)
    result = install("--dry-run", PATH=path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "install: no systemctl here: installing the unit for systemd older than 253" in out
    assert re.search(r"^install: platform: .*\(supported\)$", out, re.MULTILINE), out
    assert "install: [8] enable and start" in out
    assert "no systemctl here: enable the service on the device with: systemctl enable --now" in out
    # No systemd version, no drop-in for systemd >= 253.
    assert "Type=notify-reload" not in install("--show-dropin", PATH=path, **{**X86, "EDGE_ASSISTANT_INSTALL_SYSTEMD": ""}).stdout


VENV_COMMAND = "/opt/edge-assistant/venv/bin/edge-assistant"


def test_install_puts_the_command_on_path(tmp_path):
    bin_dir = tmp_path / "bin"
    link = bin_dir / "edge-assistant"
    result = install("--dry-run", EDGE_ASSISTANT_INSTALL_BIN_DIR=str(bin_dir))
    assert result.returncode == 0, result.stderr
    assert f"+ ln -s {VENV_COMMAND} {link}\n" in result.stdout
    # Left as it is when it is in place, and never replaced when it is something else.
    bin_dir.mkdir(exist_ok=True)
    link.symlink_to(VENV_COMMAND)
    again = install("--dry-run", EDGE_ASSISTANT_INSTALL_BIN_DIR=str(bin_dir))
    assert again.returncode == 0 and f" {link}" not in again.stdout, again.stdout
    link.unlink()
    link.write_text("#!/bin/sh\n")
    other = install("--dry-run", EDGE_ASSISTANT_INSTALL_BIN_DIR=str(bin_dir))
    assert other.returncode == 0 and f"+ ln -s {VENV_COMMAND}" not in other.stdout
    assert f"install: warning: {link} is not a link to {VENV_COMMAND}: left alone" in other.stdout


def test_uninstall_removes_the_command_link_and_only_its_own(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    link = bin_dir / "edge-assistant"
    link.symlink_to(VENV_COMMAND)
    for purge in ((), ("--purge",)):
        result = install("--dry-run", "--uninstall", *purge, EDGE_ASSISTANT_INSTALL_BIN_DIR=str(bin_dir))
        assert result.returncode == 0, result.stderr
        assert f"+ rm -f {link}\n" in result.stdout
    link.unlink()
    link.symlink_to("/usr/bin/true")
    kept = install("--dry-run", "--uninstall", EDGE_ASSISTANT_INSTALL_BIN_DIR=str(bin_dir))
    assert kept.returncode == 0 and str(link) not in kept.stdout
