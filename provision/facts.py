"""Host facts gathered in one round trip by a small sh script, and an example set for validation."""
from __future__ import annotations

from typing import Any

from provision.gpu.found import bus_key

FACTS_SCRIPT = r"""
. /etc/os-release 2>/dev/null
echo "os_id=${ID:-unknown}"
echo "os_version_id=${VERSION_ID:-}"
echo "os_codename=${VERSION_CODENAME:-}"
# Few processes: each fork and exec is a millisecond or more of every run's round trip, on every host.
echo "arch=$(dpkg --print-architecture 2>/dev/null || uname -m)"
# shellcheck disable=SC2046  # split on purpose: the node name, then the release
set -- $(uname -n -r)
kernel=$2
echo "kernel=$kernel"
echo "hostname=$1"
boot_id=; read -r boot_id < /proc/sys/kernel/random/boot_id 2>/dev/null
echo "boot_id=$boot_id"
who=$(LC_ALL=C id)
uid=${who#uid=}; uid=${uid%%[!0-9]*}
user=${who#uid=*(}; user=${user%%)*}
case $who in "uid=$uid("*) ;; *) user=$uid ;; esac
echo "user=$user"
if [ -d /run/systemd/system ]; then echo systemd=1; else echo systemd=0; fi
if [ "$uid" = 0 ] || sudo -n true 2>/dev/null; then echo sudo=1; else echo sudo=0; fi
if [ -d "/lib/modules/$kernel/build" ]; then echo kernel_headers=1; else echo kernel_headers=0; fi
echo "tmp_fs=$(stat -f -c %T /tmp 2>/dev/null)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)"
while read -r key value _; do
  [ "$key" = MemTotal: ] && { echo "mem_kb=$value"; break; }
done < /proc/meminfo 2>/dev/null
set --
for d in / /var/lib/docker /var/tmp; do [ -d "$d" ] && set -- "$@" "$d"; done
# df -P prints one unwrapped line per argument, in the order given, when it can read them all.
if df_out=$(df -Pk "$@" 2>/dev/null); then
  printf '%s\n' "$df_out" | { read -r _; for d in "$@"; do read -r _ _ _ free _ && echo "disk_free_kb $d=$free"; done; }
else
  for d in "$@"; do echo "disk_free_kb $d=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')"; done
fi
sb=unknown
if command -v mokutil >/dev/null 2>&1; then
  case $(mokutil --sb-state 2>/dev/null) in *enabled*) sb=enabled ;; *disabled*) sb=disabled ;; esac
elif [ -d /sys/firmware/efi ]; then
  for f in /sys/firmware/efi/efivars/SecureBoot-*; do
    [ -r "$f" ] && { [ "$(od -An -tu1 -j4 -N1 "$f" | tr -d ' ')" = 1 ] && sb=enabled || sb=disabled; }
  done
else
  sb=disabled
fi
echo "secure_boot=$sb"
for dev in /sys/bus/pci/devices/*; do
  [ -r "$dev/vendor" ] || continue
  read -r vendor < "$dev/vendor"
  [ "$vendor" = 0x10de ] || continue
  read -r pci_class < "$dev/class"
  read -r device < "$dev/device"
  case $pci_class in 0x03*) echo "gpu=${dev##*/} $device $pci_class" ;; esac
done
[ -x /usr/bin/nvidia-smi ] && echo "driver_loaded=$( [ -e /proc/driver/nvidia/version ] && echo 1 || echo 0)"
# Compute capability per GPU from the driver: preflight's fallback for a GPU missing from gpu_compat.yml.
if [ -e /proc/driver/nvidia/version ] && command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=pci.bus_id,compute_cap --format=csv,noheader 2>/dev/null | sed -n 's/^\([0-9A-Fa-f:.]*\), *\([0-9][0-9]*\.[0-9][0-9]*\)$/gpu_cap=\1 \2/p'
fi
true
"""

EXAMPLE_FACTS: dict[str, Any] = {
    "os_id": "ubuntu", "os_version_id": "22.04", "os_codename": "jammy", "arch": "amd64",
    "kernel": "6.8.0-1015-aws", "hostname": "example", "boot_id": "00000000-0000-0000-0000-000000000000",
    "user": "ubuntu", "systemd": True, "sudo": True, "kernel_headers": True, "tmp_fs": "ext2/ext3",
    "mem_kb": 62914560, "cpus": 8, "disk_free_kb": {"/": 100000000}, "secure_boot": "disabled",
    "gpus": [{"slot": "0000:00:1e.0", "pci_id": "10de:1db1", "class": "0x030200"}],
    "driver_loaded": False, "gpu_caps": {},
}
"""Facts used to validate roles before any connection: every fact a role may read, with a typical value."""

_FLAGS = {"systemd", "sudo", "kernel_headers", "driver_loaded"}


def parse_facts(output: str) -> dict[str, Any]:
    """The facts script's `key=value` lines as a dict with typed values."""
    facts: dict[str, Any] = {"gpus": [], "disk_free_kb": {}, "driver_loaded": False, "gpu_caps": {}}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "gpu":
            slot, device, pci_class = (value.split() + ["", "", ""])[:3]
            facts["gpus"].append({"slot": slot, "pci_id": f"10de:{device.removeprefix('0x')}", "class": pci_class})
        elif key == "gpu_cap":
            bus, _, cap = value.partition(" ")
            facts["gpu_caps"][bus_key(bus)] = cap.strip()
        elif key.startswith("disk_free_kb "):
            facts["disk_free_kb"][key.split(" ", 1)[1]] = int(value or 0)
        elif key in _FLAGS:
            facts[key] = value == "1"
        elif key in ("mem_kb", "cpus"):
            facts[key] = int(value or 0)
        else:
            facts[key] = value
    return facts
