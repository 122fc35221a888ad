#!/usr/bin/env bash
# The main job on the built-in lab: make three real hosts on this machine and provision them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 -m invoke lab.up --hosts 3
python3 -m invoke provision --inventory .lab/hosts --group lab --roles base,helper_tools "$@"
echo "A second run changes nothing:"
python3 -m invoke provision --inventory .lab/hosts --group lab --roles base,helper_tools "$@"
echo "The hosts stay up: ssh -i .lab/id_ed25519 -o UserKnownHostsFile=.lab/hosts/known_hosts root@10.200.0.11; 'invoke lab.down' removes them."
