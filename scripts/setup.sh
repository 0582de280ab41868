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
          mosquitto mosquitto-clients openssl)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}"
fi

# llama.cpp's build flags per platform. x86: -march=native can pick AMX instructions that
# crash (SIGILL) in worker threads on some CPUs, so name the instruction sets instead.
if [[ -z ${CMAKE_ARGS:-} ]]; then
  case "$(uname -m)" in
    x86_64)
      if grep -qw avx2 /proc/cpuinfo; then
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
      else
        CMAKE_ARGS="-DGGML_NATIVE=OFF"
      fi ;;
    aarch64)
      # A Jetson (JetPack) builds for its GPU; a Pi keeps llama.cpp's defaults.
      if [[ -e /etc/nv_tegra_release ]] || command -v nvcc >/dev/null 2>&1; then
        CMAKE_ARGS="-DGGML_CUDA=on"
      fi ;;
  esac
fi
export CMAKE_ARGS="${CMAKE_ARGS:-}"
echo "setup: llama-cpp-python CMAKE_ARGS='${CMAKE_ARGS}'"

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip wheel
.venv/bin/python -m pip install -q -e ".[bundled,test]"
.venv/bin/edge-assistant --version
