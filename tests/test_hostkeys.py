"""Host keys of a new instance: cloud-init's console fingerprints parsed, compared, and recorded only on a match."""
from __future__ import annotations

import base64
import hashlib

import pytest

from provision.errors import HostKeyError
from provision.hostkeys import console_fingerprints, fingerprint, record_keys, verified_keys

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIFk4YL9m0h8mR6n1Xq0PqRkz9hQ7pZJkXxQp2h0a1b2c"
ECDSA = ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/"
         "y6v0mKV0U2w0WeZRyj2wLqYCzU=")


def ed25519_fp() -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(ED25519)).digest()).decode().rstrip("=")


def console(ed_fp: str, prefix: str = "") -> str:
    """A console as cloud-init's write-ssh-key-fingerprints prints it (through logger -s)."""
    return "\n".join([
        "[   12.345678] cloud-init[612]: Cloud-init v. 22.4.2 running 'modules:final'",
        f"{prefix}#############################################################",
        f"{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        f"{prefix}256 {fingerprint(ECDSA)} root@ip-10-0-0-5 (ECDSA)",
        f"{prefix}256 {ed_fp} root@ip-10-0-0-5 (ED25519)",
        f"{prefix}-----END SSH HOST KEY FINGERPRINTS-----",
        f"{prefix}#############################################################",
        "-----BEGIN SSH HOST KEY KEYS-----",
        f"ssh-ed25519 {ED25519} root@ip-10-0-0-5",
        "-----END SSH HOST KEY KEYS-----",
    ])


def test_fingerprint_is_openssh_sha256_form():
    assert fingerprint(ED25519) == ed25519_fp() and "=" not in fingerprint(ED25519)


@pytest.mark.parametrize("prefix", ["", "ec2: ", "<14>Nov 30 23:01:02 cloud-init: "])
def test_the_fingerprint_block_is_read_whatever_prefix_logger_gives_its_lines(prefix):
    assert console_fingerprints(console(ed25519_fp(), prefix)) == {"ECDSA": fingerprint(ECDSA), "ED25519": ed25519_fp()}


def test_the_last_boots_block_counts_and_an_unfinished_block_is_not_read_yet():
    two_boots = console("SHA256:oldoldold") + "\n" + console(ed25519_fp())
    assert console_fingerprints(two_boots)["ED25519"] == ed25519_fp()
    assert console_fingerprints(console(ed25519_fp()).split("-----END")[0]) == {}
    assert console_fingerprints("Linux version 6.8.0\nno cloud-init here\n") == {}


def test_matching_keys_are_accepted():
    offered = [("ssh-ed25519", ED25519), ("ecdsa-sha2-nistp256", ECDSA)]
    assert verified_keys("b1", offered, console_fingerprints(console(ed25519_fp()))) == offered


def test_a_key_that_differs_from_the_console_is_refused():
    printed = console_fingerprints(console("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
    with pytest.raises(HostKeyError, match="does NOT match the console's SHA256:AAAA"):
        verified_keys("b1", [("ssh-ed25519", ED25519)], printed)


def test_a_key_type_the_console_does_not_list_is_refused_and_so_is_an_empty_console():
    printed = {"ED25519": ed25519_fp()}
    with pytest.raises(HostKeyError, match="ecdsa-sha2-nistp256 key .* that the console does not list"):
        verified_keys("b1", [("ssh-ed25519", ED25519), ("ecdsa-sha2-nistp256", ECDSA)], printed)
    with pytest.raises(HostKeyError, match="no SSH host key fingerprints"):
        verified_keys("b1", [("ssh-ed25519", ED25519)], {})


def test_recording_replaces_the_lines_of_a_reused_address_and_keeps_the_others(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("203.0.113.10 ssh-ed25519 OLDKEY\n198.51.100.1 ssh-ed25519 OTHER\n")
    record_keys(known, "203.0.113.10", 22, [("ssh-ed25519", ED25519)])
    assert known.read_text() == f"198.51.100.1 ssh-ed25519 OTHER\n203.0.113.10 ssh-ed25519 {ED25519}\n"
    record_keys(known, "203.0.113.10", 2222, [("ssh-ed25519", ED25519)])
    assert known.read_text().splitlines()[-1] == f"[203.0.113.10]:2222 ssh-ed25519 {ED25519}"
