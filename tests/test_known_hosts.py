"""known_hosts: each hop gets its own host's keys, the file parsed once per version (not once per host)."""
from __future__ import annotations

import os

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from provision import known_hosts
from provision.hostkeys import record_keys
from provision.ssh_hops import SSHHop

KEY = paramiko.ECDSAKey.generate()
OTHER = paramiko.ECDSAKey.generate()


def line(names: str, key=KEY) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def test_plain_ported_hashed_and_multi_name_lines_are_found_by_the_name_paramiko_looks_up(tmp_path):
    path = tmp_path / "known_hosts"
    hashed = HostKeys.hash_host("10.0.0.9")
    path.write_text("# a comment\n\n" + line("10.0.0.1") + line("[10.0.0.2]:2222", OTHER)
                    + line(hashed) + line("alias,10.0.0.3") + line("10.0.0.4", OTHER))
    found = known_hosts.known_hosts(path)
    assert [e.key.get_base64() for e in found.entries("10.0.0.1")] == [KEY.get_base64()]
    assert [e.key.get_base64() for e in found.entries("[10.0.0.2]:2222")] == [OTHER.get_base64()]
    assert found.entries("10.0.0.2") == [], "a key for port 2222 vouches for no other port"
    assert [e.key.get_base64() for e in found.entries("10.0.0.9")] == [KEY.get_base64()]
    assert len(found.entries("10.0.0.3")) == 1 and len(found.entries("alias")) == 1
    assert found.entries("10.0.0.5") == []


def test_a_hop_gets_only_its_own_hosts_keys_under_the_name_connect_checks(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(line("10.0.0.1") + line("[10.0.0.1]:2222", OTHER) + line("10.0.0.4", OTHER))
    hop = SSHHop("10.0.0.1", paramiko.SSHConfig(), user="root", port=2222)
    hop.harden("web1", path, accept_new=False)
    keys = hop.client.get_host_keys()
    assert list(keys.keys()) == ["[10.0.0.1]:2222"]
    assert keys.lookup("[10.0.0.1]:2222")[OTHER.get_name()].get_base64() == OTHER.get_base64()


def test_a_thousand_hops_parse_the_file_once_not_once_each(tmp_path, monkeypatch):
    path = tmp_path / "known_hosts"
    path.write_text("".join(line(f"10.1.{i // 250}.{i % 250}") for i in range(1000)))
    parsed = []
    real = HostKeyEntry.from_line.__func__

    def counting(cls, text, lineno=None):
        parsed.append(text)
        return real(cls, text, lineno)

    monkeypatch.setattr(HostKeyEntry, "from_line", classmethod(counting))
    for i in range(1000):
        hop = SSHHop(f"10.1.{i // 250}.{i % 250}", paramiko.SSHConfig(), user="root")
        hop.harden(f"h{i}", path, accept_new=False)
        assert len(hop.client.get_host_keys().keys()) == 1
    assert len(parsed) == 1000, "each line parsed once, for the one host it names"


def test_a_rewritten_file_is_read_again(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(line("10.0.0.1"))
    assert len(known_hosts.known_hosts(path).entries("10.0.0.7")) == 0
    record_keys(path, "10.0.0.7", 22, [(OTHER.get_name(), OTHER.get_base64())])  # replaced atomically
    assert [e.key.get_base64() for e in known_hosts.known_hosts(path).entries("10.0.0.7")] == [OTHER.get_base64()]
    with open(path, "a") as appended:  # what --accept-new does
        appended.write(line("10.0.0.8"))
    os.utime(path, ns=(1, 1))  # a different mtime even within the filesystem's timestamp granularity
    assert len(known_hosts.known_hosts(path).entries("10.0.0.8")) == 1


def test_a_missing_file_vouches_for_nothing(tmp_path):
    assert known_hosts.known_hosts(tmp_path / "absent").entries("10.0.0.1") == []
