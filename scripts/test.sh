#!/usr/bin/env bash
# The test suite: real models, a real mosquitto, a real PortAudio device (no sound card needed).
# Slow tests are included; pass -m "not slow" for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
