"""ship on real lab hosts: an hpc host reachable only through a gateway, a cut link, a full disk, odd names."""
import glob
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from provision.lab.lab import Lab
from provision.ship import LinkLostError, NoRoomError, ship
from provision.transfer.openssh import SshOptions

pytestmark = pytest.mark.lab

GW, HPC = "shipgw", "shiphpc"
SIF_DIR = "/home/ubuntu/containers"
SMALL_DIR = "/home/ubuntu/small"
ODD_NAME = "it's a \"test\" $(touch pwned) `touch pwned2`; x.sif"  # a name cannot hold a slash


@pytest.fixture(scope="module")
def lab() -> Lab:
    """shipgw and shiphpc up; shiphpc accepts SSH only from shipgw. Never torn down (the lab is shared)."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if not shutil.which("iptables"):
        pytest.skip("iptables is needed to confine the hpc host to its gateway (apt-get install iptables)")
    shared = Lab()
    if any(h.name == HPC for h in shared.hosts()):  # an earlier run's rule would keep up() from reaching its sshd
        subprocess.run(["ip", "netns", "exec", shared.host(HPC).netns, "iptables", "-F", "INPUT"], capture_output=True)
    gw, hpc = shared.up([GW, HPC])
    netns = shared.host(HPC).netns
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-F", "INPUT"], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22",
                    "!", "-s", gw.address, "-j", "DROP"], check=True)
    shared.exec(HPC, f"umount {SMALL_DIR} 2>/dev/null; rm -rf {SIF_DIR} {SMALL_DIR}")
    yield shared
    subprocess.run(["tc", "qdisc", "del", "dev", shared.host(HPC).link, "root"], capture_output=True)


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory) -> Path:
    """A temporary inventory: shiphpc (user ubuntu) behind shipgw (root)."""
    directory = tmp_path_factory.mktemp("inventory")
    shutil.copy(lab.known_hosts_path, directory / "known_hosts")
    hosts = {"all": {"vars": {"ssh_key": str(lab.client_key)}, "children": {
        "hpc": {"hosts": {HPC: {"ansible_host": lab.host(HPC).address, "ansible_user": "ubuntu",
                                "gateway": GW, "sif_dir": SIF_DIR}}},
        "gw": {"hosts": {GW: {"ansible_host": lab.host(GW).address, "ansible_user": "root"}}}}}}
    (directory / "inventory.yml").write_text(yaml.safe_dump(hosts))
    return directory


@pytest.fixture
def shipper(inventory, tmp_path):
    """ship(source, **kw) into shiphpc with a hash cache of this test's own and a silent console."""
    def run(source, host=HPC, **kw):
        return ship(str(source), host, inventory, console=Console(quiet=True),
                    hash_cache=tmp_path / "hashes.json", **kw)
    return run


def random_file(path: Path, megabytes: int) -> str:
    data = os.urandom(megabytes << 20)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def far_sha256(lab: Lab, path: str) -> str:
    return hashlib.sha256((lab.rootfs(HPC) / path.lstrip("/")).read_bytes()).hexdigest()


def test_hpc_host_refuses_ssh_except_from_the_gateway(lab):
    direct = subprocess.run(["ssh", "-i", str(lab.client_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                             "-o", f"UserKnownHostsFile={lab.known_hosts_path}", f"ubuntu@{lab.host(HPC).address}", "true"],
                            capture_output=True, timeout=30)
    assert direct.returncode == 255


def test_ship_arrives_through_the_gateway_with_its_sha256(lab, shipper, tmp_path):
    sha = random_file(tmp_path / "model.sif", 3)
    result = shipper(tmp_path / "model.sif")
    assert (result.path, result.sha256, result.bytes_sent, result.skipped) == (f"{SIF_DIR}/model.sif", sha, 3 << 20, False)
    assert lab.exec(HPC, f"sha256sum {SIF_DIR}/model.sif").stdout.split()[0] == sha
    assert lab.exec(HPC, f"stat -c %U {SIF_DIR}/model.sif").stdout.strip() == "ubuntu"


def test_unchanged_reship_is_skipped_after_one_round_trip_and_sends_nothing(shipper, tmp_path, monkeypatch):
    sha = random_file(tmp_path / "same.sif", 3)
    # Every ssh that ship starts, through its gateway too, goes through this logging wrapper.
    real_ssh = shutil.which("ssh")
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path}/ssh.log\nexec {real_ssh} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    assert shipper(tmp_path / "same.sif").bytes_sent == 3 << 20
    first = (tmp_path / "ssh.log").read_text().splitlines()
    again = shipper(tmp_path / "same.sif")
    assert (again.skipped, again.bytes_sent, again.sha256) == (True, 0, sha)
    sessions = [line for line in (tmp_path / "ssh.log").read_text().splitlines()[len(first):] if " -W " not in line]
    assert len(sessions) == 1, f"one round trip (the probe), not {sessions}"


def test_cut_link_fails_in_time_keeps_no_final_file_and_next_ship_sends_only_the_rest(lab, shipper, tmp_path):
    size = 12 << 20
    sha = random_file(tmp_path / "big.sif", 12)
    link = lab.host(HPC).link
    subprocess.run(["tc", "qdisc", "replace", "dev", link, "root", "tbf", "rate", "20mbit",
                    "burst", "32kbit", "latency", "400ms"], check=True)
    outcome: dict = {}

    def first_ship():
        try:
            outcome["result"] = shipper(tmp_path / "big.sif")
        except Exception as exc:  # the assertion below says what it was
            outcome["error"], outcome["at"] = exc, time.monotonic()

    thread = threading.Thread(target=first_ship)
    far_dir = lab.rootfs(HPC) / SIF_DIR.lstrip("/")
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                os.path.getsize(p) > 3 << 20 for p in glob.glob(str(far_dir / ".big.sif.*.ship-part"))):
            time.sleep(0.05)
        lab.cut_link(HPC)
        cut_at = time.monotonic()
        thread.join(timeout=60)
    finally:
        lab.restore_link(HPC)
        subprocess.run(["tc", "qdisc", "del", "dev", link, "root"], capture_output=True)
    assert isinstance(outcome.get("error"), LinkLostError), outcome
    assert outcome["at"] - cut_at < SshOptions().link_timeout + 5
    assert not (far_dir / "big.sif").exists()
    rest = shipper(tmp_path / "big.sif")
    assert 0 < rest.resumed_from < size
    assert rest.bytes_sent == size - rest.resumed_from
    assert (rest.sha256, far_sha256(lab, f"{SIF_DIR}/big.sif")) == (sha, sha)


def test_destination_without_room_is_refused_before_any_byte_is_sent(lab, shipper, tmp_path):
    lab.exec(HPC, f"mkdir -p {SMALL_DIR} && mount -t tmpfs -o size=1m tmpfs {SMALL_DIR} && chown ubuntu {SMALL_DIR}")
    try:
        random_file(tmp_path / "huge.sif", 3)
        with pytest.raises(NoRoomError, match=r"shiphpc: /home/ubuntu/small has .* free \(\d+ KiB\), huge.sif needs 3.0 MiB"):
            shipper(tmp_path / "huge.sif", dest_dir=SMALL_DIR)
        assert lab.exec(HPC, f"ls -A {SMALL_DIR}").stdout == ""
    finally:
        lab.exec(HPC, f"umount {SMALL_DIR}")


def test_odd_file_names_arrive_intact_and_run_nothing(lab, shipper, tmp_path):
    sha = random_file(tmp_path / ODD_NAME, 1)
    result = shipper(tmp_path / ODD_NAME)
    assert result.path == f"{SIF_DIR}/{ODD_NAME}"
    assert far_sha256(lab, result.path) == sha
    for host in (HPC, GW):  # anything a host wrote is in its overlay's upper layer
        written = subprocess.run(["find", str(lab.rootfs(host).parent / "upper"), "-name", "pwned*"],
                                 capture_output=True, text=True, check=True).stdout
        assert written == ""
    assert not list(Path.cwd().glob("pwned*")) and not list(tmp_path.glob("pwned*"))


def test_builder_file_streams_through_here_without_a_local_copy(lab, shipper, tmp_path):
    sha = random_file(lab.rootfs(GW) / "root/built.sif", 4)
    result = shipper(f"{GW}:/root/built.sif")
    assert (result.sha256, far_sha256(lab, f"{SIF_DIR}/built.sif"), result.bytes_sent) == (sha, sha, 4 << 20)
    assert not list(tmp_path.glob("*.sif"))
    assert shipper(f"{GW}:/root/built.sif").skipped


class _Watch:
    """A console file that sets an event when a line containing `needle` is written."""

    def __init__(self, needle: str):
        self.needle, self.seen, self.text = needle, threading.Event(), ""

    def write(self, text: str) -> int:
        self.text += text
        if self.needle in self.text:
            self.seen.set()
        return len(text)

    def flush(self) -> None:
        return None


def test_a_ship_started_while_the_gateway_is_unreachable_goes_through_when_it_comes_back(lab, inventory, tmp_path):
    sha = random_file(tmp_path / "later.sif", 2)
    watch = _Watch("connect attempt 1 failed")
    outcome: dict = {}

    def ship_now():
        try:
            outcome["result"] = ship(str(tmp_path / "later.sif"), HPC, inventory, console=Console(file=watch),
                                     hash_cache=tmp_path / "hashes.json",
                                     options=SshOptions(connect_timeout=2, connect_retries=5))
        except Exception as exc:  # the assertion below says what it was
            outcome["error"] = exc

    lab.cut_link(GW)
    thread = threading.Thread(target=ship_now)
    try:
        thread.start()
        assert watch.seen.wait(60), watch.text
    finally:
        lab.restore_link(GW)
    thread.join(120)
    assert "result" in outcome, (outcome, watch.text)
    assert (outcome["result"].sha256, far_sha256(lab, f"{SIF_DIR}/later.sif")) == (sha, sha)
