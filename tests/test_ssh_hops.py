"""SSH hops resolve a host as ssh(1) does, from ~/.ssh/config, without connecting to anything."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROJECT

from provision.errors import ConnectError
from provision.ssh_hops import SSHHop, read_ssh_config, split_spec


def _config(home: Path, monkeypatch, text: str):
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "config").write_text(text)
    monkeypatch.setenv("HOME", str(home))
    return read_ssh_config()


def test_a_spec_splits_into_user_host_and_port_and_ipv6_stays_whole():
    assert split_spec("alice@bastion:2222") == ("alice", "bastion", 2222)
    assert split_spec("bastion") == (None, "bastion", None)
    assert split_spec("fe80::1") == (None, "fe80::1", None)
    assert split_spec("bob@fe80::1") == ("bob", "fe80::1", None)


def test_an_alias_takes_its_hostname_user_port_and_identity_from_ssh_config(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host login\n  HostName 192.0.2.7\n  User alice\n  Port 2200\n"
                                            "  IdentityFile ~/.ssh/login_key\n  ConnectTimeout 7\n")
    hop = SSHHop("login", config, connect_kwargs={"key_filename": ["/keys/inventory_key"]})
    assert (hop.host, hop.user, hop.port, hop.connect_timeout) == ("192.0.2.7", "alice", 2200, 7.0)
    assert hop.connect_kwargs["key_filename"] == ["/keys/inventory_key", str(tmp_path / ".ssh" / "login_key")]
    assert hop.gateway is None


def test_the_inventory_user_port_and_timeout_win_over_ssh_config(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host *\n  User alice\n  Port 2200\n  ConnectTimeout 7\n")
    hop = SSHHop("192.0.2.7", config, user="root", port=22, connect_timeout=15.0)
    assert (hop.host, hop.user, hop.port, hop.connect_timeout) == ("192.0.2.7", "root", 22, 15.0)


def test_proxyjump_hops_connect_in_the_order_written_as_ssh_j_does(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host target\n  HostName 192.0.2.9\n  ProxyJump alice@first,second:2222\n")
    hop = SSHHop("target", config, connect_timeout=5.0)
    second, first = hop.gateway, hop.gateway.gateway
    assert (second.host, second.port, first.host, first.user, first.gateway) == ("second", 2222, "first", "alice", None)
    assert first.connect_timeout == second.connect_timeout == 5.0  # a hop without ConnectTimeout waits as long as its target


def test_a_host_that_is_its_own_jump_host_connects_directly(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host *\n  ProxyJump bastion\n")
    hop = SSHHop("target", config)
    assert hop.gateway.host == "bastion" and hop.gateway.gateway is None


def test_a_proxyjump_loop_in_ssh_config_is_refused_in_one_line(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ConnectError, match="ProxyJump chain in ssh_config too long"):
        SSHHop("a", config)


def test_ssh_configs_proxycommand_becomes_the_gateway(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, "Host inner\n  ProxyCommand ssh -W %h:%p bastion\n")
    assert SSHHop("inner", config).gateway == "ssh -W inner:22 bastion"


def test_match_exec_in_ssh_config_still_runs_its_command_though_invoke_loads_late(tmp_path):
    """paramiko is imported without invoke (tests/test_imports.py); a `Match exec` line loads it and runs."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text('Match exec "true"\n  User alice\nMatch exec "false"\n  Port 2222\n')
    probe = ("import sys\nfrom provision.ssh_hops import SSHHop, read_ssh_config\n"
             "before = 'invoke' in sys.modules\nhop = SSHHop('target', read_ssh_config())\n"
             "print(before, hop.user, hop.port, 'invoke' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT, capture_output=True, text=True, check=True,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.stdout.split() == ["False", "alice", "22", "True"]


def test_an_ssh_socket_sends_small_packets_at_once_and_acknowledges_what_it_reads():
    from provision.ssh_hops import _transport_without_delays

    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        transport = _transport_without_delays(client)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        peer.sendall(b"SSH-2.0-x\r\n")
        assert transport.sock.recv(64) == b"SSH-2.0-x\r\n"  # through the prompt-ACK wrapper where Linux has one
        transport.close()
    finally:
        peer.close()
        server.close()


def test_ssh_config_is_parsed_again_only_when_it_changes(tmp_path, monkeypatch):
    first = _config(tmp_path, monkeypatch, "Host web\n    Port 2200\n")
    assert read_ssh_config() is first, "unchanged: the parse is reused (a fleet run asks once per host)"
    changed = _config(tmp_path, monkeypatch, "Host web\n    Port 2201\n    User deploy\n")
    assert changed is not first and changed.lookup("web")["port"] == "2201"
