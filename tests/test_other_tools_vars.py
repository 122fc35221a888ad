"""Variables of other tools (DeepOps, Kubespray, facts, magic variables) never break a run of ours."""
from __future__ import annotations

import shutil

import pytest

from provision import cli
from provision.cli import prepare
from provision.compiler import host_variables, plan_host
from provision.errors import ProvisionError
from provision.facts import EXAMPLE_FACTS
from provision.inventory import load_inventory
from provision.roles import load_roles
from provision.secrets import Secret
from tests.helpers import PROJECT, roles_with, write

FIXTURES = PROJECT / "tests" / "fixtures" / "inventories"


def test_userdata_with_base_only_does_not_read_the_ngc_key(monkeypatch):
    monkeypatch.delenv("NGC_API_KEY", raising=False)
    data = cli.userdata(PROJECT / "hosts", "p3-builder", "base", {}, "shell", False)
    assert data.plan.roles == ["base"] and not data.plan.secrets
    with pytest.raises(ProvisionError, match="NGC_API_KEY, which is not set"):
        cli.userdata(PROJECT / "hosts", "p3-builder", "ngc_login", {}, "shell", False)


def test_deepops_group_vars_next_to_our_roles_do_not_refuse_helper_tools(tmp_path):
    inventory = tmp_path / "deepops"
    shutil.copytree(FIXTURES / "deepops", inventory)
    (inventory / "inventory").write_text((inventory / "inventory").read_text().replace("#gpu01 ", "gpu01 "))
    _, prepared = prepare(inventory, "gpu01", None, "base,helper_tools", {})
    host, roles = prepared[0]
    assert [r.name for r in roles] == ["base", "helper_tools"]
    assert host.vars["maas_repo"].startswith("{{ 'ppa:maas/3.7' if ansible_distribution_version is version")


def test_unused_values_with_lookups_and_ansible_filters_are_left_as_written(tmp_path):
    write(tmp_path / "hosts", "[gpu]\nnode1\n")
    write(tmp_path / "group_vars" / "all.yml", """
        kube_token: "{{ lookup('env', 'KUBE_TOKEN') }}"
        fancy: "{{ groups['kube_node'] | map('extract', hostvars, 'ip') | ansible.utils.ipaddr }}"
        other_tool_secret: {secret_env: NEVER_SET_ANYWHERE}
        helper_tools_extra: ["{{ 'nvtop' if ansible_distribution == 'Ubuntu' else 'htop' }}"]
    """)
    host = load_inventory(tmp_path / "hosts").host("node1")
    plan = plan_host(load_roles(PROJECT / "roles", ["helper_tools"]), host, {}, EXAMPLE_FACTS)
    assert any("nvtop" in p.step.apply for p in plan.steps)


def test_magic_variables_and_ansible_facts_reach_templates(tmp_path):
    write(tmp_path / "inv" / "hosts", "[gpu]\nnode1.example.com ansible_host=192.0.2.4\nnode2\n")
    roles = roles_with(tmp_path, {"magic": {
        "tasks.yml": "- name: Describe\n  template: {src: about.j2, dest: /etc/about}\n",
        "templates/about.j2": (
            "{{ inventory_hostname }} {{ inventory_hostname_short }} {{ group_names | join(',') }}\n"
            "{{ groups['gpu'] | join(',') }} {{ hostvars['node1.example.com']['ansible_host'] }}\n"
            "{{ inventory_dir }} {{ inventory_file }}\n"
            "{{ ansible_distribution }} {{ ansible_distribution_release }} {{ ansible_distribution_major_version }}"
            " {{ ansible_architecture }} {{ ansible_os_family }} {{ ansible_processor_vcpus }}"
            " {{ ansible_memtotal_mb }} {{ ansible_facts['distribution_version'] }}\n")}})
    inventory = load_inventory(tmp_path / "inv")
    plan = plan_host(load_roles(roles, ["magic"]), inventory.host("node1.example.com"), {}, EXAMPLE_FACTS)
    lines = plan.steps[0].step.desired.decode().splitlines()
    inv = (tmp_path / "inv").resolve()
    assert lines == ["node1.example.com node1 gpu", "node1.example.com,node2 192.0.2.4", f"{inv} {inv}/hosts",
                     "Ubuntu jammy 22 x86_64 Debian 8 61440 22.04"]


@pytest.mark.parametrize("name", ["base_url", "verify_ssl", "nvidia_driver_force_install", "docker_install",
                                  "nvidia_driver_ubuntu_branch", "nvidia_driver_ubuntu_use_open_kernel_modules"])
def test_names_of_other_tools_pass_the_misspelling_check(tmp_path, name):
    write(tmp_path / "inventory.yml", f"all:\n  hosts:\n    a: {{ansible_host: 192.0.2.1, {name}: x}}\n")
    prepare(tmp_path, "a", None, "base", {})


def test_a_misspelt_variable_of_our_roles_is_still_caught(tmp_path):
    write(tmp_path / "inventory.yml", "all:\n  hosts:\n    a: {ansible_host: 192.0.2.1, nvidia_driver_brnach: '535'}\n")
    with pytest.raises(ProvisionError, match="unknown variable 'nvidia_driver_brnach' .*did you mean 'nvidia_driver_branch'"):
        prepare(tmp_path, "a", None, "base", {})


def test_deepops_names_for_the_driver_branch_docker_users_and_registry_logins(tmp_path):
    write(tmp_path / "hosts", "[gpu]\nnode1\n")
    write(tmp_path / "group_vars" / "gpu.yml", """
        nvidia_driver_ubuntu_branch: 535
        nvidia_driver_ubuntu_use_open_kernel_modules: true
        docker_users: [alice, bob]
        docker_login_registries:
          - {registry: nvcr.io, username: '$oauthtoken', password: ngc-key-value}
          - {registry: docker.io, username: me, password: hub-pw}
    """)
    roles = load_roles(PROJECT / "roles", ["nvidia_driver", "docker_ce", "ngc_login"])
    merged = host_variables(roles, load_inventory(tmp_path / "hosts").host("node1"), {})
    assert (merged["nvidia_driver_branch"], merged["nvidia_driver_flavour"]) == ("535", "open")
    assert merged["docker_ce_users"] == ["alice", "bob"]
    assert isinstance(merged["ngc_login_api_key"], Secret) and merged["ngc_login_api_key"].value == "ngc-key-value"
    assert merged["registry_logins"]["docker.io"] == {"username": "me", "password": "hub-pw"}
    ours_win = host_variables(roles, load_inventory(tmp_path / "hosts").host("node1"), {"docker_ce_users": ["carol"]})
    assert ours_win["docker_ce_users"] == ["carol"]
