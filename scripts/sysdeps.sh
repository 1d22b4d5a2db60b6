#!/usr/bin/env bash
# Install the Debian packages fields-app needs (open3d: libusb, EGL; viewer: Xvfb) when missing.
# Called by `make setup`; safe to run again. Needs root or sudo only when something is missing.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "fields-app: please install the system packages: ${missing[*]} (no apt-get here)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "fields-app: need root to install: ${missing[*]}" >&2; exit 1
  fi
fi
echo "fields-app: installing system packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
