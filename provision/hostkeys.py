"""A new instance's SSH host keys, recorded only when they match what cloud-init printed on its console.

cloud-init's keys_to_console module runs tools/write-ssh-key-fingerprints (canonical/cloud-init),
which prints, through `logger -s` (so each line may carry a syslog prefix):

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:K8dZ... root@ip-10-0-0-5 (ED25519)          <- `ssh-keygen -l -f KEY.pub`
    -----END SSH HOST KEY FINGERPRINTS-----

EC2 shows the instance's console through GetConsoleOutput; the lab's hosts keep theirs in a file.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

from provision.errors import HostKeyError

BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
END = "-----END SSH HOST KEY FINGERPRINTS-----"
# `ssh-keygen -l` output: BITS SHA256:BASE64 COMMENT (TYPE)
PRINTED = re.compile(r"\b(\d+) (SHA256:[A-Za-z0-9+/]+=*) .*\(([A-Z0-9-]+)\)\s*$")
# ssh-keygen's names for key types (sshkey.c key types: "ED25519", "ECDSA", "RSA", "DSA").
KEYGEN_TYPE = {"ssh-ed25519": "ED25519", "ecdsa-sha2-nistp256": "ECDSA", "ecdsa-sha2-nistp384": "ECDSA",
               "ecdsa-sha2-nistp521": "ECDSA", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


def console_fingerprints(console: str) -> dict[str, str]:
    """{key type: SHA256 fingerprint} from the last fingerprint block of a console log ({} when none yet)."""
    found: dict[str, str] = {}
    inside = False
    for line in console.splitlines():
        if BEGIN in line:
            inside, found = True, {}
        elif END in line:
            inside = False
        elif inside and (match := PRINTED.search(line)):
            found[match[3]] = match[2]
    return found if not inside else {}


def fingerprint(key_base64: str) -> str:
    """The SHA256 fingerprint of a public key blob as OpenSSH prints it."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def scan_host_keys(address: str, port: int = 22, timeout: int = 10) -> list[tuple[str, str]]:
    """The host keys `address` offers, as (type, base64), read with OpenSSH's ssh-keyscan."""
    argv = ["ssh-keyscan", "-T", str(timeout), "-p", str(port), "-t", "ed25519,ecdsa,rsa", address]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 4)
    keys = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append((parts[1], parts[2]))
    return keys


def verified_keys(label: str, offered: list[tuple[str, str]], printed: dict[str, str]) -> list[tuple[str, str]]:
    """The offered keys, once every one of them matches the console's fingerprint for its type.

    Refused (HostKeyError) when the console printed nothing, when a key's type is missing from it,
    or when a fingerprint differs: then the host answering is not the instance that booted.
    """
    if not printed:
        raise HostKeyError(f"{label}: the console shows no SSH host key fingerprints; the host key is not recorded")
    if not offered:
        raise HostKeyError(f"{label}: offered no SSH host key")
    for key_type, blob in offered:
        name = KEYGEN_TYPE.get(key_type, key_type)
        got = fingerprint(blob)
        if name not in printed:
            raise HostKeyError(f"{label}: offers a {key_type} key {got} that the console does not list "
                               f"(it lists {', '.join(sorted(printed))}); nothing recorded")
        if printed[name] != got:
            raise HostKeyError(f"{label}: {key_type} key {got} does NOT match the console's {printed[name]}: "
                               "the host answering is not the instance that booted; nothing recorded")
    return offered


def record_keys(known_hosts: Path, address: str, port: int, keys: list[tuple[str, str]]) -> None:
    """Put `keys` in known_hosts for `address`, replacing its older lines (a reused address); atomically."""
    name = address if port == 22 else f"[{address}]:{port}"
    kept = []
    if known_hosts.exists():
        kept = [line for line in known_hosts.read_text().splitlines() if line.split(" ", 1)[0] != name]
    lines = kept + [f"{name} {key_type} {blob}" for key_type, blob in keys]
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=known_hosts.parent, prefix=".known_hosts.")
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.replace(temporary, known_hosts)


def verify_and_record(label: str, address: str, console: str, known_hosts: Path, port: int = 22) -> list[tuple[str, str]]:
    """Scan `address`, check its keys against the console's fingerprints, record them: the keys recorded."""
    keys = verified_keys(label, scan_host_keys(address, port), console_fingerprints(console))
    record_keys(known_hosts, address, port, keys)
    return keys
