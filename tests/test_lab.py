"""The lab itself: real hosts answer SSH, reach apt through the cache, reboot, fail on cue, and go away."""

import os
import socket
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from provision.lab import cgroups, network
from provision.lab.aptcache import PROXY_URL
from provision.lab.commands import LabError

pytestmark = pytest.mark.lab

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


def wait_for_new_boot(lab_ssh, host: str, old_boot_id: str, user: str = "root",
                      timeout: float = 30) -> tuple[str, float]:
    """The host's boot id once SSH answers with one other than `old_boot_id`, and the wait."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        answer = lab_ssh(host, BOOT_ID, user=user, timeout=5)
        if answer.returncode == 0 and answer.stdout.strip() not in ("", old_boot_id):
            return answer.stdout.strip(), time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{host} did not come back with a new boot id within {timeout} s")


def test_hosts_answer_ssh_as_root_with_their_own_hostname(lab, lab_hosts, lab_ssh):
    for name in lab_hosts:
        answer = lab_ssh(name, "id -u; hostname")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.split() == ["0", name]


def test_ubuntu_logs_in_with_the_lab_key_and_sudoes_without_password(lab, lab_hosts, lab_ssh):
    for name in lab_hosts:
        answer = lab_ssh(name, "id -un; sudo -n id -u", user="ubuntu")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.split() == ["ubuntu", "0"]


def test_paramiko_logs_in_with_the_lab_key_and_strict_host_keys(lab, lab_hosts):
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(lab.host(lab_hosts[0]).address, username="ubuntu", key_filename=str(lab.client_key),
                       timeout=5, look_for_keys=False, allow_agent=False)
        _, stdout, _ = client.exec_command("sudo -n hostname")
        assert stdout.read().decode().strip() == lab_hosts[0]
    finally:
        client.close()


def test_sshd_takes_keys_only(lab):
    settings = lab.exec("lab1", "sshd -T").stdout.splitlines()
    assert "passwordauthentication no" in settings
    assert "pubkeyauthentication yes" in settings


def test_each_host_has_its_own_host_key_in_known_hosts(lab, lab_hosts):
    lines = [line.split() for line in lab.known_hosts_path.read_text().splitlines()]
    by_address = {address: key for address, _, key in lines}
    addresses = [lab.host(name).address for name in lab_hosts]
    assert set(addresses) <= set(by_address)
    assert len({by_address[a] for a in addresses}) == len(addresses)


def test_a_host_whose_key_was_not_recorded_is_refused(lab, lab_ssh):
    lab.up(["nokey1"], record_host_keys=False)
    assert lab.host("nokey1").address not in lab.known_hosts_path.read_text()
    answer = lab_ssh("nokey1", "true")
    assert answer.returncode == 255
    assert "Host key verification failed" in answer.stderr


def test_inventory_names_every_host_the_lab_key_and_the_apt_cache(lab, lab_hosts):
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    assert inventory["all"]["vars"] == {"ssh_key": str(lab.client_key), "base_apt_proxy": PROXY_URL}
    hosts = inventory["all"]["children"]["lab"]["hosts"]
    for name in lab_hosts:
        assert hosts[name] == {"ansible_host": lab.host(name).address, "ansible_user": "root"}
    assert Path(inventory["all"]["vars"]["ssh_key"]).is_absolute()


def test_apt_through_the_cache_installs_a_package_where_no_proxy_was_configured(lab):
    lab.up(["apt1"])
    assert "proxy" not in lab.exec("apt1", "apt-config dump").stdout.lower()
    proxy = f"-o Acquire::http::Proxy={PROXY_URL}"
    lab.exec("apt1", f"apt-get {proxy} update && apt-get {proxy} install -y tmux")
    assert lab.exec("apt1", "dpkg-query -W -f='${Status}' tmux").stdout == "install ok installed"


def test_proc_sys_is_read_only_inside_hosts(lab):
    attempt = lab.exec("lab1", "echo 1 > /proc/sys/vm/drop_caches", check=False)
    assert attempt.returncode != 0
    assert "Read-only file system" in attempt.stderr


def test_reboot_over_ssh_changes_the_boot_id_keeps_files_and_ends_processes(lab, lab_ssh):
    lab.up(["reboot1"])
    before = lab_ssh("reboot1", f"echo kept > /root/kept; nohup sleep 1000 >/dev/null 2>&1 & {BOOT_ID}")
    assert before.returncode == 0, before.stderr
    lab_ssh("reboot1", "nohup sh -c 'sleep 1; reboot' >/dev/null 2>&1 &")
    boot_id, _ = wait_for_new_boot(lab_ssh, "reboot1", before.stdout.strip(), timeout=120)
    after = lab_ssh("reboot1", "cat /root/kept; pgrep -x sleep || echo no-sleep")
    assert after.stdout.split() == ["kept", "no-sleep"]


def test_stop_then_start_is_a_reboot(lab):
    lab.up(["power1"])
    lab.exec("power1", "echo kept > /root/kept; touch /run/gone-after-boot")
    before = lab.exec("power1", BOOT_ID).stdout
    lab.stop("power1")
    assert not lab.is_running("power1")
    with pytest.raises(LabError, match="power1 is not running"):
        lab.exec("power1", "true")
    lab.start("power1")
    assert lab.exec("power1", BOOT_ID).stdout != before
    assert lab.exec("power1", "cat /root/kept; ls /run").stdout.split()[0] == "kept"
    assert "gone-after-boot" not in lab.exec("power1", "ls /run").stdout


def test_a_cut_link_makes_a_new_connection_time_out_until_restored(lab, lab_ssh):
    lab.up(["cut1"])
    address = lab.host("cut1").address
    lab.cut_link("cut1")
    try:
        with pytest.raises(OSError):
            socket.create_connection((address, 22), timeout=2).close()
    finally:
        lab.restore_link("cut1")
    assert lab_ssh("cut1", "true").returncode == 0


def test_a_held_dpkg_lock_makes_apt_fail_to_get_the_lock(lab):
    lab.up(["lock1"])
    apt_install = "apt-get -o DPkg::Lock::Timeout=0 install -y --no-download tmux"
    with lab.hold_dpkg_lock("lock1"):
        locked = lab.exec("lock1", apt_install, check=False)
    assert locked.returncode == 100
    assert "Could not get lock /var/lib/dpkg/lock-frontend" in locked.stderr
    unlocked = lab.exec("lock1", apt_install, check=False)
    assert "Could not get lock" not in unlocked.stderr


def test_a_systemd_host_boots_systemd_and_reboots_through_it(lab, lab_ssh):
    lab.up(["sd1"], systemd=True)
    state = lab.exec("sd1", "systemctl is-system-running --wait", check=False).stdout.strip()
    assert state in ("running", "degraded")
    assert lab.exec("sd1", "ps -p 1 -o comm=").stdout.strip() == "systemd"
    before = lab_ssh("sd1", f"touch /root/kept; {BOOT_ID}").stdout.strip()
    lab_ssh("sd1", "nohup sh -c 'sleep 1; reboot' >/dev/null 2>&1 &")
    wait_for_new_boot(lab_ssh, "sd1", before)
    assert lab.exec("sd1", "ls /root").stdout.split() == ["kept"]


def _cgroups_named(name: str, tops: list[Path]) -> list[Path]:
    return [Path(d) / name for top in tops for d, subdirectories, _ in os.walk(top) if name in subdirectories]


def test_docker_runs_as_a_service_in_a_systemd_host_inside_its_own_cgroups(lab):
    ip_forward_here = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    lab.up(["sd1"], systemd=True)
    proxy = f"-o Acquire::http::Proxy={PROXY_URL}"
    lab.exec("sd1", f"apt-get {proxy} update -qq && apt-get {proxy} install -y -qq docker.io")
    lab.exec("sd1", "systemctl restart docker && systemctl is-active docker")
    lab.exec("sd1", "mkdir -p /tmp/image && cp /usr/bin/tini-static /tmp/image/ && "
                    "tar -C /tmp/image -c . | docker import - tiny")
    assert "tini version" in lab.exec("sd1", "docker run --rm tiny /tini-static --version").stdout
    host_cgroups = [top / "sd1" for top in cgroups.lab_cgroups()]
    assert _cgroups_named("docker", host_cgroups), "docker's cgroups are in the host's own"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == ip_forward_here


def _lab_processes(lab) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (
                    Path(os.readlink(proc / "root")).is_relative_to(lab.state_dir)
                    or str(lab.state_dir).encode() in (proc / "cmdline").read_bytes()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_down_leaves_no_namespace_mount_process_or_link_behind(lab, lab_hosts):
    try:
        lab.down()
        assert network.lab_netns() == []
        assert network.lab_links() == []
        assert str(lab.state_dir) not in Path("/proc/self/mountinfo").read_text()
        assert _lab_processes(lab) == []
        assert not lab.aptcache_running()
        assert cgroups.lab_cgroups() == []
        assert lab.hosts() == []
        lab.down()  # idempotent
    finally:
        lab.up(lab_hosts)  # the session's hosts, for the tests that come after
