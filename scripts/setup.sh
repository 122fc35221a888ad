#!/usr/bin/env bash
# Installs what provision, its lab and its tests need on a Debian/Ubuntu machine (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(mmdebstrap tini apt-cacher-ng iproute2 openssh-client openssh-server gnupg apt-utils
              dpkg-dev shellcheck systemd-container iptables reprepro squashfs-tools siftool
              docker-registry apache2-utils jq curl zstd busybox-static gpg-agent vagrant
              qemu-user-static binfmt-support arch-test)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
# apt-cacher-ng's package starts a system-wide daemon where it can; the lab runs its own.
if command -v systemctl > /dev/null && systemctl is-active --quiet apt-cacher-ng 2>/dev/null; then
  systemctl stop apt-cacher-ng || true
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
