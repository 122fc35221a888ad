"""ship's cipher choice against a real sshd on this machine: aes128-gcm when the server offers it, a working fallback when not."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from provision.ship import ship

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SSHD),
                                reason="needs root and OpenSSH's sshd (openssh-server) to run a server here")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """start(ciphers) -> (inventory dir, sshd's debug log): an sshd on 127.0.0.1 offering only `ciphers`."""
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client")], check=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    servers = []

    def start(ciphers: str) -> tuple[Path, Path]:
        port, log = free_port(), tmp_path / f"sshd-{len(servers)}.log"
        config = tmp_path / f"sshd-{len(servers)}.conf"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\nPidFile none\nUsePAM no\n"
            f"PermitRootLogin prohibit-password\nAuthorizedKeysFile {keys / 'client.pub'}\nStrictModes no\n"
            f"Ciphers {ciphers}\nLogLevel DEBUG1\n")
        server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(log, "w"))
        servers.append(server)
        deadline = time.monotonic() + 30
        while "Server listening" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        inventory = tmp_path / f"inventory-{len(servers)}"
        inventory.mkdir()
        host_key = (keys / "host.pub").read_text().split()
        (inventory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        (inventory / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"far": {
            "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
            "ssh_key": str(keys / "client"), "sif_dir": str(tmp_path / f"received-{len(servers)}")}}}}))
        return inventory, log

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


def negotiated(log: Path) -> set[str]:
    """The ciphers sshd agreed to, from its `kex: client->server cipher: NAME` debug lines."""
    return {line.split("cipher: ")[1].split()[0] for line in log.read_text().splitlines()
            if "kex: client->server cipher:" in line}


def test_ship_uses_aes128_gcm_when_the_server_offers_it(sshd, tmp_path):
    inventory, log = sshd("chacha20-poly1305@openssh.com,aes256-ctr,aes128-gcm@openssh.com")
    (tmp_path / "a.sif").write_bytes(os.urandom(100_000))
    result = ship(str(tmp_path / "a.sif"), "far", inventory, console=Console(quiet=True), hash_cache=tmp_path / "h.json")
    assert result.bytes_sent == 100_000
    assert negotiated(log) == {"aes128-gcm@openssh.com"}


def test_ship_falls_back_to_what_the_server_offers(sshd, tmp_path):
    inventory, log = sshd("aes128-ctr")
    (tmp_path / "b.sif").write_bytes(os.urandom(100_000))
    result = ship(str(tmp_path / "b.sif"), "far", inventory, console=Console(quiet=True), hash_cache=tmp_path / "h.json")
    assert (tmp_path / "received-1" / "b.sif").read_bytes() == (tmp_path / "b.sif").read_bytes()
    assert result.bytes_sent == 100_000 and negotiated(log) == {"aes128-ctr"}


def test_ship_logs_in_with_a_key_whose_path_holds_a_percent_sign(sshd, tmp_path):
    inventory, _ = sshd("aes128-ctr")
    key = tmp_path / "keys" / "client%h"  # ssh would read %h as the host name in a path it expands
    shutil.copy(tmp_path / "keys" / "client", key)
    key.chmod(0o600)
    hosts = yaml.safe_load((inventory / "inventory.yml").read_text())
    hosts["all"]["hosts"]["far"]["ssh_key"] = str(key)
    (inventory / "inventory.yml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "c.sif").write_bytes(os.urandom(1000))
    ship(str(tmp_path / "c.sif"), "far", inventory, console=Console(quiet=True), hash_cache=tmp_path / "h.json")
    assert (tmp_path / "received-1" / "c.sif").read_bytes() == (tmp_path / "c.sif").read_bytes()
