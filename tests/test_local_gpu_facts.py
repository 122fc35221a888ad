"""Facts, preflight and the nvidia-smi check run through the local transport, as on a GPU workstation."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from provision import cli
from provision.connection import Timeouts
from provision.gpu.nvidia_smi import NVIDIA_SMI_QUERY, SmiFailure, parse_query
from provision.facts import FACTS_SCRIPT, parse_facts
from tests.helpers import write


def local_inventory(tmp_path):
    write(tmp_path / "hosts" / "inventory.yml", "all:\n  hosts:\n    here: {connection: local}\n")
    return tmp_path / "hosts"


def test_facts_of_this_machine_through_the_local_transport(tmp_path):
    facts = cli.facts(local_inventory(tmp_path), "here", False, Timeouts())
    assert facts["kernel"] and facts["arch"] and facts["boot_id"]
    assert facts["os_id"] in ("debian", "ubuntu")
    assert isinstance(facts["gpus"], list)
    assert all(gpu["pci_id"].startswith("10de:") for gpu in facts["gpus"])


def test_facts_of_this_machine_match_what_each_command_says_alone(tmp_path):
    """The facts script reads several facts per process; each must equal the plain command's answer."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    facts = cli.facts(local_inventory(tmp_path), "here", False, Timeouts())
    assert facts["kernel"] == out("uname", "-r") and facts["hostname"] == out("uname", "-n")
    assert facts["user"] == out("id", "-un") and facts["arch"] == out("dpkg", "--print-architecture")
    assert facts["boot_id"] == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert facts["cpus"] == int(out("getconf", "_NPROCESSORS_ONLN"))
    assert facts["mem_kb"] == int(out("awk", "/^MemTotal:/ {print $2}", "/proc/meminfo"))
    assert sorted(facts["disk_free_kb"]) == sorted(d for d in ("/", "/var/lib/docker", "/var/tmp") if os.path.isdir(d))
    assert all(free > 0 for free in facts["disk_free_kb"].values())


def test_a_user_without_a_passwd_entry_is_named_by_uid_as_id_does():
    if shutil.which("setpriv") is None or subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("needs root and setpriv to run the facts script as a uid with no passwd entry")
    as_nobody = subprocess.run(["setpriv", "--reuid", "48213", "--regid", "48213", "--clear-groups", "sh", "-c", FACTS_SCRIPT],
                               capture_output=True, text=True, cwd="/")
    facts = parse_facts(as_nobody.stdout)
    assert facts["user"] == "48213" and facts["sudo"] is False


def test_preflight_of_this_machine_decides_from_its_real_gpus(tmp_path):
    facts, decision = cli.preflight(local_inventory(tmp_path), "here", {}, False, Timeouts())
    if facts["gpus"]:
        assert decision.driver_branch.value and decision.driver_flavour.value in ("open", "proprietary")
    else:
        assert decision.gpus == () and decision.driver_branch.value is None


def test_the_verify_query_reads_every_gpu_of_this_machine_when_nvidia_smi_exists(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi on this machine: run on a GPU machine to check the query against a real driver")
    run = subprocess.run(NVIDIA_SMI_QUERY, shell=True, capture_output=True, text=True)
    report = parse_query(run.stdout + run.stderr)
    assert not isinstance(report, SmiFailure), f"nvidia-smi failed here: {report}"
    assert run.returncode == 0
    facts = cli.facts(local_inventory(tmp_path), "here", False, Timeouts())
    assert len(report.gpus) == len(facts["gpus"]) > 0, "one row per GPU the PCI bus shows"


def test_facts_script_reads_only_sysfs_for_gpus():
    assert "lspci" not in FACTS_SCRIPT and "/sys/bus/pci/devices" in FACTS_SCRIPT


def test_a_df_that_fails_for_one_directory_leaves_the_others_their_own_figures(tmp_path):
    """One df for all directories; when it fails for one, its lines no longer match the arguments in order."""
    real_df = shutil.which("df")
    fake = tmp_path / "bin" / "df"
    fake.parent.mkdir()
    # A df that cannot read /var/tmp when asked for several directories: the header, /'s line, an error.
    fake.write_text(f'#!/bin/sh\nfor a; do [ "$a" = /var/tmp ] && [ $# -gt 2 ] && '
                    f'{{ {real_df} -Pk / | head -n 2; echo "df: /var/tmp: unreadable" >&2; exit 1; }}; done\n'
                    f'exec {real_df} "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    facts = parse_facts(subprocess.run(["sh", "-c", FACTS_SCRIPT], capture_output=True, text=True, env=env).stdout)
    alone = subprocess.run([real_df, "-Pk", "/var/tmp"], capture_output=True, text=True).stdout.splitlines()[1].split()
    assert abs(facts["disk_free_kb"]["/var/tmp"] - int(alone[3])) < 1_000_000
    assert facts["disk_free_kb"]["/"] > 0
