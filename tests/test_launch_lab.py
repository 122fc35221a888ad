"""A real cloud-init first boot in the lab: its console's host key fingerprints vouch for the key recorded,
a key that does not match is refused, and userdata-status follows the user-data run to `finished`."""
from __future__ import annotations

import json
import time

import pytest

from provision import cli
from provision.errors import HostKeyError
from provision.hostkeys import console_fingerprints, fingerprint, scan_host_keys, verify_and_record
from provision.inventory import load_inventory
from provision.userdata_status import follow_status, read_status
from tests.helpers import write

pytestmark = pytest.mark.lab
BOOTED = "hkboot1"
PROXY = "-o Acquire::http::Proxy=http://10.200.0.1:3142 -o Acquire::http::Proxy::10.200.0.1=DIRECT"
DECLARED = {"os_id": "debian", "os_version_id": "12", "os_codename": "bookworm", "arch": "amd64"}


def wait_for_fingerprints(lab, name: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        console = lab.console(name)
        if console_fingerprints(console):
            return console
        time.sleep(2)
    raise AssertionError(f"no fingerprint block on {name}'s console after {timeout}s:\n{lab.console(name)[-2000:]}")


def test_the_key_is_recorded_only_when_it_matches_the_console_of_a_real_cloud_init_boot(lab, tmp_path):
    lab.up([BOOTED], systemd=True)
    address = lab.host(BOOTED).address
    lab.exec(BOOTED, f"apt-get {PROXY} update -qq && DEBIAN_FRONTEND=noninteractive "
             f"apt-get {PROXY} install -y -qq cloud-init > /dev/null")
    inventory = tmp_path / "hosts"
    write(inventory / "inventory.yml", json.dumps({"all": {"hosts": {BOOTED: {
        "ansible_host": address, "ansible_user": "ubuntu", "ssh_key": str(lab.client_key), "roles": ["base"],
        "declared_facts": DECLARED}}}}))
    (inventory / "known_hosts").write_text("")
    data = cli.userdata(inventory, BOOTED, None, {}, "mime", False)
    root = lab.rootfs(BOOTED)
    write(root / "etc/cloud/cloud.cfg.d/99-lab.cfg", "datasource_list: [NoCloud]\nnetwork: {config: disabled}\n")
    write(root / "var/lib/cloud/seed/nocloud/meta-data", f"instance-id: {BOOTED}-1\nlocal-hostname: {BOOTED}\n")
    (root / "var/lib/cloud/seed/nocloud/user-data").write_bytes(data.body)
    keys_before = {fingerprint(blob) for _, blob in scan_host_keys(address)}
    lab.stop(BOOTED)
    lab.start(BOOTED)

    console = wait_for_fingerprints(lab, BOOTED)
    printed = console_fingerprints(console)
    lab.wait_for_ssh(BOOTED)
    # cloud-init made new host keys at first boot (ssh_deletekeys): the old ones would be wrong now.
    assert not keys_before & set(printed.values())

    # A console from another boot (another host's keys) is refused, and nothing is recorded.
    forged = console.replace(printed["ED25519"], fingerprint(scan_host_keys(lab.host("lab1").address)[0][1]))
    with pytest.raises(HostKeyError, match="does NOT match the console's"):
        verify_and_record(BOOTED, address, forged, inventory / "known_hosts")
    assert (inventory / "known_hosts").read_text() == ""

    recorded = verify_and_record(BOOTED, address, console, inventory / "known_hosts")
    offered = {fingerprint(blob) for _, blob in scan_host_keys(address)}
    assert {fingerprint(blob) for _, blob in recorded} == offered and offered <= set(printed.values())
    lines = (inventory / "known_hosts").read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == sorted(t for t, _ in recorded)

    # The recorded key lets strict SSH in; the user-data run is followed until it finished.
    host = load_inventory(inventory).host(BOOTED)
    said: list[str] = []
    final = follow_status(host, load_inventory(inventory), said.append, timeout=600, interval=2)
    assert final.status == "finished", final
    assert said[-1] == f"{BOOTED}: user-data finished"
    assert "== provision: finished" in lab.exec(BOOTED, "cat /var/log/provision-userdata.log").stdout


def test_userdata_status_of_a_failed_run_ends_with_the_logs_last_lines(lab, tmp_path):
    lab.up(["udstat1"])
    address = lab.host("udstat1").address
    inventory = tmp_path / "hosts"
    write(inventory / "inventory.yml", json.dumps({"all": {"hosts": {"udstat1": {
        "ansible_host": address, "ansible_user": "ubuntu", "ssh_key": str(lab.client_key)}}}}))
    (inventory / "known_hosts").write_text("".join(l + "\n" for l in lab.known_hosts_path.read_text().splitlines()
                                                   if l.split()[0] == address))
    loaded = load_inventory(inventory)
    host = loaded.host("udstat1")
    lab.exec("udstat1", "rm -rf /var/lib/provision /var/log/provision-userdata.log")
    assert read_status(host, loaded).status == "pending"
    lab.exec("udstat1", "mkdir -p /var/lib/provision && echo running > /var/lib/provision/userdata-status && "
             "seq 1 100 | sed 's/^/log line /' > /var/log/provision-userdata.log && "
             "echo '== provision: FAILED (exit 1)' >> /var/log/provision-userdata.log && "
             "chmod 600 /var/log/provision-userdata.log")
    said: list[str] = []

    def fail_once_running(line: str) -> None:
        said.append(line)
        if line.endswith("user-data running"):
            lab.exec("udstat1", "echo 'failed 1' > /var/lib/provision/userdata-status")

    final = follow_status(host, loaded, fail_once_running, timeout=120, interval=0.5)
    assert said == ["udstat1: user-data running", "udstat1: user-data failed 1"]
    assert final.failed and final.log_tail[-1] == "== provision: FAILED (exit 1)"
    assert final.log_tail[0] == "log line 62" and len(final.log_tail) == 40, "read through sudo: the log is 0600 root"
