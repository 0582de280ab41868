#!/usr/bin/env bash
# Prepares a real Home Assistant core for tests/test_home_assistant.py: HA needs Python >= 3.13,
# Debian 12 ships 3.11, so HA lives in a Debian 13 chroot (made with debootstrap, sharing the
# host's network) with HA, and the requirements of the integrations it loads, in a venv at
# /opt/ha. Everything is cached under $EDGE_ASSISTANT_TEST_CACHE (default
# /var/cache/edge-assistant-tests) and reused when present; safe to run again, also in parallel.
# Needs root. Prints the chroot's path.
set -euo pipefail

cache=${EDGE_ASSISTANT_TEST_CACHE:-/var/cache/edge-assistant-tests}
version=${HOME_ASSISTANT_VERSION:-2026.2.3}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$cache/home-assistant-trixie

# gcc and the headers: a few of HA's requirements (lru-dict) have no wheel for every platform.
packages=(python3 python3-venv python3-dev gcc libc6-dev ca-certificates tzdata)

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one preparation at a time
if [[ ! -x $root/usr/bin/python3 ]]; then
  rm -rf "$root.partial"
  echo "home-assistant-env: debootstrap trixie into $root" >&2
  debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    trixie "$root.partial" "$mirror" >&2
  mv "$root.partial" "$root"
fi

# The host's network settings, CA certificates and pip configuration (mirrors, certificates),
# refreshed on every run since they may change between runs.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$root/etc/pip.conf"
if [[ -d $HOME/.config/pip ]]; then
  mkdir -p "$root/root/.config"
  rm -rf "$root/root/.config/pip"
  cp -r "$HOME/.config/pip" "$root/root/.config/pip"
fi
pip_env=(HOME=/root PATH=/usr/local/bin:/usr/bin:/bin)
while IFS='=' read -r name value; do
  [[ $name == PIP_* ]] && pip_env+=("$name=$value")
done < <(env)

missing=()
for package in "${packages[@]}"; do
  # shellcheck disable=SC2016  # dpkg-query's format, not an expansion
  chroot "$root" dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "home-assistant-env: installing ${missing[*]} in the chroot" >&2
  chroot "$root" apt-get update -q >&2
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi

marker=$root/opt/ha/installed-$version
if [[ ! -f $marker ]]; then
  echo "home-assistant-env: installing homeassistant==$version (a few minutes)" >&2
  rm -rf "$root/opt/ha"
  chroot "$root" env -i "${pip_env[@]}" python3 -m venv /opt/ha
  chroot "$root" env -i "${pip_env[@]}" /opt/ha/bin/pip install -q --upgrade pip >&2
  chroot "$root" env -i "${pip_env[@]}" /opt/ha/bin/pip install -q "homeassistant==$version" >&2
  touch "$marker"
fi

# HA runs with --skip-pip (the test must not depend on installs at run time): the requirements
# of the integrations HA always loads and of those the test uses, pinned by HA's constraints.
requirements_marker=$root/opt/ha/integrations-installed-$version
if [[ ! -f $requirements_marker ]]; then
  requirements=$(chroot "$root" /opt/ha/bin/python - <<'EOF'
import json, pathlib
import homeassistant.components as components
from homeassistant import bootstrap

base = pathlib.Path(components.__path__[0])
wanted = [*bootstrap.CORE_INTEGRATIONS, *bootstrap.DEFAULT_INTEGRATIONS,
          *bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS, *bootstrap.FRONTEND_INTEGRATIONS,
          "mqtt", "onboarding", "config", "api", "websocket_api", "device_automation"]
seen, requirements = set(), set()
while wanted:
    name = wanted.pop()
    if name in seen or not (base / name / "manifest.json").exists():
        continue
    seen.add(name)
    manifest = json.loads((base / name / "manifest.json").read_text())
    requirements.update(manifest.get("requirements", []))
    wanted += manifest.get("dependencies", []) + manifest.get("after_dependencies", [])
print(" ".join(sorted(requirements)))
EOF
)
  echo "home-assistant-env: integration requirements: $requirements" >&2
  constraints=$(chroot "$root" /opt/ha/bin/python -c \
    'import homeassistant, os; print(os.path.dirname(homeassistant.__file__))')/package_constraints.txt
  # shellcheck disable=SC2086  # a list of requirement specifiers
  chroot "$root" env -i "${pip_env[@]}" /opt/ha/bin/pip install -q -c "$constraints" $requirements >&2
  touch "$requirements_marker"
fi
echo "$root"
