"""The engine on real lab hosts: convergence, idempotence, check mode, faults, host keys, the dpkg lock."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys
import threading
import time

import paramiko
import pytest
from rich.console import Console

from provision import cli
from provision.connection import Timeouts
from provision.runner import RunOptions
from tests.helpers import PROJECT, roles_with, write

pytestmark = pytest.mark.lab
HELPER_TOOLS = ["tmux", "htop", "git", "curl", "plocate", "rsync", "jq"]


def inventory_for(tmp_path, lab, hosts: dict[str, str], known_hosts: bool = True, **group_vars) -> Path:
    """An inventory of lab hosts as {name: user}, with the lab's key, proxy and (optionally) host keys."""
    lines = ["all:", "  vars:", f"    ssh_key: {lab.client_key}", "    base_apt_proxy: http://10.200.0.1:3142"]
    lines += [f"    {key}: {value}" for key, value in group_vars.items()]
    lines += ["  children:", "    test:", "      hosts:"]
    for name, user in hosts.items():
        lines += [f"        {name}: {{ansible_host: {lab.host(name).address}, ansible_user: {user}}}"]
    directory = tmp_path / "hosts"
    write(directory / "inventory.yml", "\n".join(lines) + "\n")
    if known_hosts:
        wanted = {lab.host(name).address for name in hosts}
        kept = [l for l in lab.known_hosts_path.read_text().splitlines() if l.split(" ", 1)[0].strip("[]").split("]")[0] in wanted]
        (directory / "known_hosts").write_text("\n".join(kept) + "\n")
    return directory


def provision(inventory, group="test", roles="helper_tools", roles_dir=None, **options):
    console = Console(file=open(os.devnull, "w"))
    return cli.provision(inventory, None, group, roles, RunOptions(**options), None, console,
                         roles_dir or PROJECT / "roles")


def installed(lab, host: str, packages: list[str]) -> list[str]:
    out = lab.exec(host, "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' " + " ".join(packages), check=False)
    return sorted(line.split()[1] for line in out.stdout.splitlines() if line.startswith("ii "))


@pytest.fixture
def exec_requests(monkeypatch):
    """Every SSH exec request sent, as (host address, command): counted on the wire, not by the tool."""
    sent: list[tuple[str, str]] = []
    original = paramiko.Channel.exec_command

    def spy(channel, command):
        sent.append((channel.get_transport().getpeername()[0], command))
        return original(channel, command)

    monkeypatch.setattr(paramiko.Channel, "exec_command", spy)
    return sent


def test_helper_tools_converge_on_three_hosts_as_root_and_sudo_user_then_change_nothing(lab, tmp_path, exec_requests):
    lab.up(["eng1", "eng2", "eng3"])
    inventory = inventory_for(tmp_path, lab, {"eng1": "root", "eng2": "ubuntu", "eng3": "ubuntu"})
    first = provision(inventory)
    assert {name: r.status for name, r in first.items()} == {"eng1": "changed", "eng2": "changed", "eng3": "changed"}, \
        {name: r.error for name, r in first.items()}
    for host in ("eng1", "eng2", "eng3"):
        assert installed(lab, host, HELPER_TOOLS) == sorted(HELPER_TOOLS)
    assert any(cmd == "sudo -n sh -s" for _, cmd in exec_requests), "the ubuntu hosts ran the script through sudo"
    exec_requests.clear()
    second = provision(inventory)
    assert {name: (r.status, r.changed) for name, r in second.items()} == {h: ("ok", 0) for h in ("eng1", "eng2", "eng3")}
    per_host = {}
    for address, _ in exec_requests:
        per_host[address] = per_host.get(address, 0) + 1
    assert per_host == {lab.host(h).address: 2 for h in ("eng1", "eng2", "eng3")}


def test_check_mode_changes_nothing_then_a_changed_template_shows_its_diff(lab, tmp_path):
    lab.up(["chk1"])
    inventory = inventory_for(tmp_path, lab, {"chk1": "root"})
    snapshot = "dpkg-query -W; find /etc /var/lib/provision -xdev -type f -exec sha256sum {} + 2>/dev/null | sort"
    before = lab.exec("chk1", snapshot, check=False).stdout
    result = provision(inventory, check=True, diff=True)["chk1"]
    assert lab.exec("chk1", snapshot, check=False).stdout == before
    assert [(s.task, s.status) for s in result.steps] == [
        ("Make apt wait for the dpkg lock instead of failing", "would-change"),
        ("Route apt through the proxy", "would-change"),
        ("Install the helper tools", "would-change"),
        ("build the locate database", "would-change"),
    ]
    assert installed(lab, "chk1", ["tmux"]) == []
    assert provision(inventory)["chk1"].status == "changed"
    moved = provision(inventory, check=True, diff=True, extra={"base_apt_proxy_direct": ["10.200.0.1"]})["chk1"]
    changing = [s for s in moved.steps if s.status == "would-change"]
    assert [s.task for s in changing] == ["Route apt through the proxy"]
    assert '+Acquire::http::Proxy::10.200.0.1 "DIRECT";' in changing[0].diff
    real = provision(inventory, extra={"base_apt_proxy_direct": ["10.200.0.1"]})["chk1"]
    assert [s.task for s in real.steps if s.status == "changed"] == ["Route apt through the proxy"]
    assert "DIRECT" in lab.exec("chk1", "cat /etc/apt/apt.conf.d/81provision-proxy").stdout


def test_a_cut_link_fails_that_host_within_the_timeout_while_the_others_finish(lab, tmp_path):
    lab.up(["cut1", "cut2"])
    lab.exec("cut1", "rm -f /var/tmp/slow-started /var/tmp/slow-done")
    inventory = inventory_for(tmp_path, lab, {"cut1": "root", "cut2": "root"})
    roles = roles_with(tmp_path, {"slow": {"tasks.yml": """
        - name: Work for a while
          command: {shell: "touch /var/tmp/slow-started; sleep 12; touch /var/tmp/slow-done", creates: /var/tmp/slow-done}
    """}})
    timeouts = Timeouts(connect=5, keepalive_interval=1, keepalive_timeout=4)
    cut: dict[str, float] = {}

    def cut_once_the_step_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if lab.exec("cut1", "test -e /var/tmp/slow-started", check=False).returncode == 0:
                lab.cut_link("cut1")
                cut["at"] = time.monotonic()
                return
            time.sleep(0.1)

    cutter = threading.Thread(target=cut_once_the_step_runs)
    started = time.monotonic()
    cutter.start()
    try:
        results = provision(inventory, roles="slow", roles_dir=roles, timeouts=timeouts)
    finally:
        cutter.join()
        lab.restore_link("cut1")
    assert "at" in cut, "the step never started on cut1"
    assert results["cut2"].status == "changed"
    assert results["cut1"].failed
    assert "cut1 (10.200.0." in results["cut1"].error and "link lost" in results["cut1"].error
    # Not a speed: the absence of a hang. The keepalive gives up 4 s after the cut; 30 s of margin
    # for a loaded machine, still well short of the 12 s step plus anything a hang would take.
    reported = started + results["cut1"].seconds
    assert reported - cut["at"] < timeouts.keepalive_timeout + 30


def test_exit_status_and_summary_say_a_host_failed(lab, tmp_path):
    lab.up(["ex1"])
    inventory = inventory_for(tmp_path, lab, {"ex1": "root"})
    with open(inventory / "inventory.yml", "a") as extra:
        extra.write("        ghost: {ansible_host: 10.200.0.250, ansible_user: root}\n")
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "invoke", "provision", "--inventory", str(inventory), "--group", "test",
                          "--roles", "base", "--connect-timeout", "3", "--json", str(report)],
                         cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "ghost" in run.stdout and "unreachable" in run.stdout
    import json

    data = json.loads(report.read_text())
    assert data["failed"] == ["ghost"]
    assert data["hosts"]["ex1"]["status"] in ("ok", "changed")
    assert "timed out" in data["hosts"]["ghost"]["error"] or "cannot connect" in data["hosts"]["ghost"]["error"]


def test_unknown_host_key_is_refused_until_accepted_then_remembered(lab, tmp_path):
    lab.up(["key1"])
    inventory = inventory_for(tmp_path, lab, {"key1": "root"}, known_hosts=False)
    refused = provision(inventory, roles="base")["key1"]
    assert refused.status == "unreachable"
    assert "unknown host key for 10.200.0." in refused.error and "ssh-ed25519 SHA256:" in refused.error
    assert "--accept-new" in refused.error
    assert not (inventory / "known_hosts").exists()
    accepted = provision(inventory, roles="base", accept_new=True)["key1"]
    assert accepted.status in ("changed", "ok"), accepted.error
    assert "ssh-ed25519" in (inventory / "known_hosts").read_text()
    again = provision(inventory, roles="base")["key1"]
    assert again.status == "ok", again.error


def test_a_held_dpkg_lock_makes_the_run_wait_then_succeed(lab, tmp_path):
    lab.up(["lock1"])
    inventory = inventory_for(tmp_path, lab, {"lock1": "root"})
    assert provision(inventory, roles="base")["lock1"].status == "changed"
    locked, seen = threading.Event(), {}

    def apt_is_running() -> bool:
        processes = lab.exec("lock1", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' ' '", check=False).stdout
        return "apt-get" in processes and "install" in processes

    def hold():
        """Hold dpkg's locks until apt-get install is seen running (waiting on them), then let go."""
        with lab.hold_dpkg_lock("lock1"):
            locked.set()
            deadline = time.monotonic() + 300
            while not apt_is_running() and time.monotonic() < deadline:
                time.sleep(0.2)
            seen["apt waited"] = apt_is_running()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(60), "the lab could not take the dpkg locks"
    try:
        result = provision(inventory, extra={"helper_tools_packages": ["tmux"]})["lock1"]
    finally:
        holder.join()
    assert seen["apt waited"], "apt-get install ran while the locks were held"
    assert result.status == "changed", result.error
    assert installed(lab, "lock1", ["tmux"]) == ["tmux"]


def _gateway_only(lab, host: str, gateway: str) -> None:
    """The host accepts SSH only from the gateway (a cluster login node behind a bastion)."""
    subprocess.run(["ip", "netns", "exec", lab.host(host).netns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22",
                    "!", "-s", lab.host(gateway).address, "-j", "DROP"], check=True)


def test_a_host_behind_a_bastion_is_provisioned_through_its_gateway(lab, tmp_path):
    lab.up(["bast1", "inner1"])
    _gateway_only(lab, "inner1", "bast1")
    inventory = inventory_for(tmp_path, lab, {"bast1": "root", "inner1": "ubuntu"})
    text = (inventory / "inventory.yml").read_text().replace(
        f"inner1: {{ansible_host: {lab.host('inner1').address}, ansible_user: ubuntu}}",
        f"inner1: {{ansible_host: {lab.host('inner1').address}, ansible_user: ubuntu, gateway: bast1}}")
    (inventory / "inventory.yml").write_text(text)
    result = cli.provision(inventory, "inner1", None, "base", RunOptions(), None, Console(file=open(os.devnull, "w")),
                           PROJECT / "roles")["inner1"]
    assert result.status == "changed", result.error
    assert "81provision-proxy" in lab.exec("inner1", "ls /etc/apt/apt.conf.d/").stdout


def test_ssh_config_aliases_and_proxyjump_are_honoured(lab, tmp_path, monkeypatch):
    lab.up(["bast2", "inner2"])
    _gateway_only(lab, "inner2", "bast2")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host jump\n  HostName {lab.host('bast2').address}\n  User root\n  IdentityFile {lab.client_key}\n\n"
        f"Host cluster-login\n  HostName {lab.host('inner2').address}\n  User ubuntu\n  ProxyJump jump\n"
        f"  IdentityFile {lab.client_key}\n")
    monkeypatch.setenv("HOME", str(home))
    directory = tmp_path / "hosts"
    write(directory / "inventory.yml", "all:\n  vars: {base_apt_proxy: 'http://10.200.0.1:3142'}\n"
          "  hosts:\n    cluster-login:\n")
    wanted = {lab.host("bast2").address, lab.host("inner2").address}
    (directory / "known_hosts").write_text("".join(
        l + "\n" for l in lab.known_hosts_path.read_text().splitlines() if l.split()[0] in wanted))
    result = cli.provision(directory, "cluster-login", None, "base", RunOptions(), None,
                           Console(file=open(os.devnull, "w")), PROJECT / "roles")["cluster-login"]
    assert result.status == "changed", result.error
    assert lab.exec("inner2", "cat /etc/apt/apt.conf.d/81provision-proxy").stdout.count("10.200.0.1:3142") == 1
