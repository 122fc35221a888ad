"""`invoke inventory` against `ansible-inventory` itself: the same inventories must give the same JSON."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.inventory import load_inventory
from provision.inventory_view import graph, inventory_list
from tests.helpers import PROJECT

FIXTURES = PROJECT / "tests" / "fixtures" / "inventories"
CACHE = Path(os.environ.get("PROVISION_ANSIBLE_CACHE", "/var/cache/provision-ansible"))
CASES = ["ansible-docs/ini-plugin-example1.ini", "ansible-docs/ini-plugin-example2.ini",
         "ansible-docs/yaml-plugin-example.yml", "ansible-docs/intro-inventory.ini", "ansible-docs/intro-inventory.yml",
         "deepops", "kubespray", "precedence-ini", "precedence-yaml"]


@pytest.fixture(scope="module")
def ansible_inventory() -> Path:
    """ansible-inventory from ansible-core installed by pip into a throwaway venv (kept in CACHE for reruns)."""
    exe = CACHE / "venv" / "bin" / "ansible-inventory"
    if not exe.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        for argv in ([sys.executable, "-m", "venv", str(CACHE / "venv")],
                     [str(CACHE / "venv" / "bin" / "pip"), "install", "-q", "ansible-core"]):
            run = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if run.returncode != 0:
                shutil.rmtree(CACHE / "venv", ignore_errors=True)
                pytest.skip(f"cannot install ansible-core to compare with ({' '.join(argv[-2:])}): {run.stderr.strip()[-300:]}")
    return exe


def ansible_says(exe: Path, source: Path, *args: str) -> str:
    config = CACHE / "ansible.cfg"  # an empty configuration: Ansible's defaults, whatever this machine has
    if not config.exists():
        config.write_text("[defaults]\n")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(CACHE), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(config), "ANSIBLE_LOCAL_TEMP": str(CACHE / "tmp")}
    run = subprocess.run([str(exe), "-i", str(source), *args], capture_output=True, text=True, env=env,
                         cwd=source.parent, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout


def deepops_with_hosts(tmp: Path) -> Path:
    """DeepOps's sample inventory with its example hosts uncommented, as a user fills it in."""
    target = tmp / "deepops-hosts"
    shutil.copytree(FIXTURES / "deepops", target)
    text = (target / "inventory").read_text()
    (target / "inventory").write_text(re.sub(r"(?m)^#((?:mgmt|login|gpu)\d\d\b.*|ansible_\w+=.*)$", r"\1", text))
    return target


@pytest.mark.parametrize("case", CASES)
def test_list_equals_ansible_inventory_list(ansible_inventory, case):
    source = FIXTURES / case
    ours = json.loads(json.dumps(inventory_list(load_inventory(source))))
    assert ours == json.loads(ansible_says(ansible_inventory, source, "--list"))


def test_deepops_filled_in_equals_ansible_with_its_group_vars(ansible_inventory, tmp_path):
    source = deepops_with_hosts(tmp_path)
    ours = inventory_list(load_inventory(source))
    assert set(ours["_meta"]["hostvars"]) == {"mgmt01", "mgmt02", "mgmt03", "login01", "gpu01", "gpu02"}
    assert ours["_meta"]["hostvars"]["gpu01"]["ansible_ssh_common_args"].startswith("-o ProxyCommand=")
    assert json.loads(json.dumps(ours)) == json.loads(ansible_says(ansible_inventory, source, "--list"))


def test_ini_and_yaml_forms_of_one_inventory_read_the_same():
    for pair in (("ansible-docs/intro-inventory.ini", "ansible-docs/intro-inventory.yml"),
                 ("precedence-ini", "precedence-yaml")):
        first, second = (inventory_list(load_inventory(FIXTURES / p)) for p in pair)
        assert first == second


def test_precedence_follows_depth_priority_name_and_files_over_inline():
    for case in ("precedence-ini", "precedence-yaml"):
        inventory = load_inventory(FIXTURES / case)
        # h1: parent (depth 1, priority 5), other (depth 1, priority 10), child (depth 2): then group_vars/parent.yml
        assert inventory.host("h1").vars["level"] == "parent_file"
        assert inventory.host("h1").vars["hv"] == "file"
        # h2: alpha and beta (depth 1, priority 1) by name, then parent (priority 5): so files in that order too
        assert inventory.host("h2").vars["ab"] == "beta_file"
        assert inventory.host("h2").vars["level"] == "parent_file"
        assert inventory.host("h2").vars["c"] == "child_dir_b"
        assert inventory.host("h0").vars["level"] == "host_inline"
        assert inventory.host("h3").vars["ansible_port"] == 2222


@pytest.mark.parametrize("case", ["ansible-docs/intro-inventory.ini", "precedence-yaml", "kubespray"])
def test_graph_equals_ansible_inventory_graph(ansible_inventory, case):
    source = FIXTURES / case
    assert graph(load_inventory(source)) == ansible_says(ansible_inventory, source, "--graph").rstrip("\n")


def test_host_vars_equal_ansible_inventory_host(ansible_inventory, tmp_path):
    source = deepops_with_hosts(tmp_path)
    ours = load_inventory(source).host("gpu01").vars
    assert json.loads(json.dumps(ours)) == json.loads(ansible_says(ansible_inventory, source, "--host", "gpu01"))
