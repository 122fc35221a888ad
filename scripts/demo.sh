#!/usr/bin/env bash
# The main job on the built-in lab: make three real hosts on this machine and provision them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 -m invoke lab.up --hosts 3
python3 -m invoke provision --inventory .lab/hosts --group lab --roles base,helper_tools
echo "A second run changes nothing:"
python3 -m invoke provision --inventory .lab/hosts --group lab --roles base,helper_tools
if [ "${1:-}" = "--builder" ] || [ "${DEMO_BUILDER:-}" = 1 ]; then
  echo "The whole GPU build-host stack on a systemd lab host (vendor repos, GPU and nvcr.io are the lab's stand-ins):"
  python3 scripts/lab_builder.py
fi
echo "The hosts stay up: ssh -i .lab/id_ed25519 -o UserKnownHostsFile=.lab/hosts/known_hosts root@10.200.0.11; 'invoke lab.down' removes them."
