#!/usr/bin/env bash
# Installs edge-assistant with scripts/install.sh in a booted Debian 12 container (systemd as
# PID 1, its journal), then checks what an administrator sees: the journal priorities of the
# daemon's lines, `status` by a user who may not ask, that `config check` writes nothing and
# commands on the system config use /var/lib/edge-assistant, the command on PATH, a refused
# reload, and that --uninstall --purge removes it all. No broker and no sound card: the
# daemon's warnings about them are what `journalctl -p warning` must show.
#
#   sudo scripts/container-check.sh [ROOT_DIR]      (default /var/tmp/edge-assistant-container)
#
# Needs root, debootstrap and systemd-nspawn (apt-get install debootstrap systemd-container).
# The root file system is kept for a faster second run; the container is stopped at the end.
# root's pip wheel cache is copied in, so a llama-cpp-python built here is not compiled again.

# The checks below are scripts for the container's shell, in single quotes on purpose.
# shellcheck disable=SC2016
set -euo pipefail

root=${1:-/var/tmp/edge-assistant-container}
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
machine=ea-check

say() { echo "container-check: $*"; }

[[ $(id -u) -eq 0 ]] || { echo "container-check: run as root" >&2; exit 1; }
for tool in debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || { echo "container-check: needs $tool (apt-get install debootstrap systemd-container)" >&2; exit 1; }
done

if [[ ! -x $root/lib/systemd/systemd ]]; then
  say "debootstrap bookworm (minbase, systemd) into $root"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,sudo,python3,ca-certificates \
    bookworm "$root" "$mirror"
fi
echo "$machine" >"$root/etc/hostname"
# debootstrap writes no /etc/hosts: without it `localhost` does not resolve (docs/deployment.md).
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 %s\n' "$machine" >"$root/etc/hosts"
# The host's CA bundle, for pip behind this host's TLS setup; kept apart from the container's
# own bundle, which ca-certificates regenerates.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/host-ca.crt"
if [[ -d /root/.cache/pip/wheels ]]; then
  mkdir -p "$root/root/.cache/pip"
  cp -a /root/.cache/pip/wheels "$root/root/.cache/pip/"
fi
# What an older `sudo edge-assistant config check` left in root's home (a kept root file system).
rm -rf "$root/root/.local/share/edge-assistant"
say "copy the checkout to /root/edge-assistant"
rm -rf "$root/root/edge-assistant"
mkdir -p "$root/root/edge-assistant"
(cd "$src" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
  tar -C "$root/root/edge-assistant" -xf -

nspawn_pid="" leader=""
# shellcheck disable=SC2317  # called from the EXIT trap
stop_container() {
  [[ -n $nspawn_pid ]] && kill -0 "$nspawn_pid" 2>/dev/null || return 0
  if [[ -n $leader ]]; then in_box systemctl poweroff 2>/dev/null || true; fi
  for _ in $(seq 30); do kill -0 "$nspawn_pid" 2>/dev/null || return 0; sleep 1; done
  kill "$nspawn_pid" 2>/dev/null || true
}
trap stop_container EXIT

in_box() { nsenter -t "$leader" -a -- /usr/bin/env -i \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  PIP_CERT=/etc/host-ca.crt PIP_DEFAULT_TIMEOUT=180 "$@"; }

say "boot it (log: $root.log)"
# --keep-unit and --register=no: nspawn asks the host's systemd for neither a scope nor a
# machine, so it boots on a host whose PID 1 is not systemd too.
systemd-nspawn -b -D "$root" -M "$machine" --register=no --keep-unit </dev/null >"$root.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 60); do
  leader=$(pgrep -P "$nspawn_pid" | head -n1 || true)
  [[ -n $leader ]] && [[ $(in_box systemctl is-system-running 2>/dev/null || true) =~ ^(running|degraded)$ ]] && break
  leader=""
  sleep 2
done
[[ -n $leader ]] || { say "FAIL: the container did not boot"; tail -n 20 "$root.log"; exit 1; }
say "booted: $(in_box systemctl --version | head -n1), $(in_box sh -c '. /etc/os-release; echo "$PRETTY_NAME"')"

say "install.sh, first run"
in_box /root/edge-assistant/scripts/install.sh
say "install.sh, second run (must change nothing)"
in_box /root/edge-assistant/scripts/install.sh | tee "$root/tmp/second-run.log"

failures=0
check() {  # DESCRIPTION COMMAND...: run, report, go on
  local description=$1
  shift
  if "$@"; then say "ok: $description"; else say "FAIL: $description"; failures=$((failures + 1)); fi
}
# shellcheck disable=SC2317  # called through check
# The venv's command by its path, so that only the PATH check depends on the link.
box_sh() { in_box env ea=/opt/edge-assistant/venv/bin/edge-assistant bash -c "$1"; }

check "the second install.sh run changed nothing" bash -c "! grep -q '^+ ' '$root/tmp/second-run.log'"
check "the service runs" box_sh 'systemctl is-active -q edge-assistant'
# The microphone and speaker warnings come just after READY=1, once the audio streams fail.
check "journalctl -p warning: the daemon's warnings (broker, microphone, speaker)" box_sh '
  for _ in $(seq 30); do
    journalctl -q -b -u edge-assistant -p warning -o cat >/tmp/warnings
    grep -q "microphone missing" /tmp/warnings && grep -q "speaker missing" /tmp/warnings &&
      grep -q "broker unreachable" /tmp/warnings && break
    sleep 1
  done
  cat /tmp/warnings
  grep -q "microphone missing" /tmp/warnings && grep -q "speaker missing" /tmp/warnings &&
    grep -q "^WARNING edge_assistant.health: broker unreachable" /tmp/warnings'
check "journalctl -p warning: no info lines" box_sh '
  journalctl -q -b -u edge-assistant -o cat | grep -q "^INFO " &&
    ! journalctl -q -b -u edge-assistant -p warning -o cat | grep "^INFO "'

check "status by a user outside the group: one line, exit 4" box_sh '
  id outsider >/dev/null 2>&1 || useradd -m outsider
  set +e
  runuser -l outsider -c "$ea status" >/tmp/out 2>/tmp/err
  code=$?
  cat /tmp/err
  [[ $code -eq 4 && ! -s /tmp/out && $(wc -l </tmp/err) -eq 1 ]] && grep -q "may not ask" /tmp/err'
check "status as root: the report" box_sh '
  set +e; $ea status >/tmp/out; code=$?; head -n1 /tmp/out
  [[ $code -le 1 ]] && grep -q "config *ok" /tmp/out'

check "sudo edge-assistant config check writes nothing" box_sh '
  touch /tmp/mark; sleep 1
  sudo $ea config check || exit 1
  changed=$(find / -xdev -newer /tmp/mark ! -path "/var/log/journal/*" ! -path /tmp/mark)
  echo "changed: ${changed:-nothing}"
  [[ -z $changed && ! -e /root/.local/share/edge-assistant ]]'
check "commands on the system config use /var/lib/edge-assistant" box_sh '
  path=$(sudo $ea models path embedded) && echo "$path" && [[ $path == /var/lib/edge-assistant/* ]]'

check "edge-assistant reload from PATH" box_sh '
  [[ $(readlink /usr/local/bin/edge-assistant) == /opt/edge-assistant/venv/bin/edge-assistant ]] &&
    edge-assistant reload'
check "a refused config: the reload fails, the service goes on, -p err says why" box_sh '
  config=/etc/edge-assistant/edge-assistant.toml
  cp -p $config /root/good.toml
  since=@$(date +%s)
  sed -i "s/^max_tokens = .*/max_tokens = \"six\"/" $config
  systemctl reload edge-assistant && refused=0 || refused=1
  cp -p /root/good.toml $config
  ((refused)) || exit 1
  journalctl -q -b -u edge-assistant -p err --since "$since" -o cat | tee /tmp/err
  systemctl is-active -q edge-assistant && grep -q "reload failed: llm.max_tokens" /tmp/err &&
    systemctl reload edge-assistant'

check "--uninstall --purge removes the service, the link, config, state and user" box_sh '
  /root/edge-assistant/scripts/install.sh --uninstall --purge &&
    ! command -v edge-assistant && [[ ! -e /usr/local/bin/edge-assistant ]] &&
    [[ ! -e /etc/edge-assistant && ! -e /var/lib/edge-assistant && ! -e /opt/edge-assistant ]] &&
    ! id edge-assistant 2>/dev/null'

say "done: $failures failed"
exit $((failures > 0))
