#!/usr/bin/env bash
# Puts the end-of-turn model, Smart Turn v3.2 (BSD 2-Clause, Copyright (c) 2024-2026 Daily),
# beside a venv's edge-assistant: it ships inside the pipecat-ai wheel, and only that one file is
# taken out, checked against its sha256, into <venv>/share/edge-assistant, where the embedded
# default is looked for; no pipecat at run time. Usage: install-turn-end-model.sh VENV_PYTHON
set -euo pipefail
python=$1
if "$python" -c "from edge_assistant import models; models.embedded_turn_end_path()" 2>/dev/null; then
  exit 0
fi
wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
"$python" -m pip download -q --no-deps --only-binary :all: "pipecat-ai==1.14.0" -d "$wheel_dir"
"$python" -c 'import sys; from edge_assistant import models
print("end-of-turn model installed:", models.install_turn_end_from_wheel(sys.argv[1]))' \
  "$wheel_dir"/pipecat_ai-*.whl
