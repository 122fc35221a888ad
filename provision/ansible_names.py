"""Names other Ansible tools use: ansible_* facts from ours, and DeepOps variables that mean the same as ours."""
from __future__ import annotations

from typing import Any

from provision.secrets import Secret

# Ansible's fact values, following ansible-core 2.19's lib/ansible/module_utils/facts/:
# system/distribution.py (distribution names, OS_FAMILY_MAP: Ubuntu and Debian are "Debian"),
# system/platform.py (architecture is platform.machine(): x86_64, aarch64),
# hardware/linux.py (memtotal_mb = MemTotal kB // 1024; processor_vcpus / processor_nproc).
DEEPOPS_NAMES = {"nvidia_driver_ubuntu_branch", "nvidia_driver_ubuntu_use_open_kernel_modules", "docker_users",
                 "docker_login_registries"}
DISTRIBUTIONS = {"ubuntu": "Ubuntu", "debian": "Debian"}
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def ansible_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The common ansible_* fact names, made from our facts (both as ansible_X and ansible_facts['X'])."""
    os_id = str(facts.get("os_id", ""))
    version = str(facts.get("os_version_id", ""))
    machine = MACHINES.get(str(facts.get("arch", "")), str(facts.get("arch", "")))
    found = {
        "distribution": DISTRIBUTIONS.get(os_id, os_id.capitalize()),
        "distribution_version": version,
        "distribution_major_version": version.split(".")[0],
        "distribution_release": facts.get("os_codename", ""),
        "os_family": "Debian" if os_id in DISTRIBUTIONS else os_id.capitalize(),
        "architecture": machine,
        "machine": machine,
        "kernel": facts.get("kernel", ""),
        "hostname": str(facts.get("hostname", "")).split(".")[0],
        "nodename": facts.get("hostname", ""),
        "user_id": facts.get("user", ""),
        "memtotal_mb": int(facts.get("mem_kb") or 0) // 1024,
        "processor_vcpus": int(facts.get("cpus") or 0),
        "processor_nproc": int(facts.get("cpus") or 0),
        "system": "Linux",
    }
    return {**{f"ansible_{key}": value for key, value in found.items()}, "ansible_facts": found}


def from_deepops(variables: dict[str, Any]) -> dict[str, Any]:
    """Our variables set from DeepOps's names for the same things, where ours are not set.

    DeepOps (github.com/NVIDIA/deepops): `nvidia_driver_ubuntu_branch` and
    `nvidia_driver_ubuntu_use_open_kernel_modules` (playbooks/nvidia-software/tasks/
    nvidia-driver-ubuntu-packages.yml), `docker_users` (geerlingguy.docker, which DeepOps uses),
    `docker_login_registries` (roles/docker-login: a list of {registry, username, password}).
    """
    ours: dict[str, Any] = {}
    if variables.get("nvidia_driver_ubuntu_branch") not in (None, "") and not variables.get("nvidia_driver_branch"):
        ours["nvidia_driver_branch"] = str(variables["nvidia_driver_ubuntu_branch"])
    if variables.get("nvidia_driver_ubuntu_use_open_kernel_modules") is True and not variables.get("nvidia_driver_flavour"):
        ours["nvidia_driver_flavour"] = "open"
    if isinstance(variables.get("docker_users"), list) and "docker_ce_users" not in variables:
        ours["docker_ce_users"] = list(variables["docker_users"])
    logins = variables.get("docker_login_registries")
    if isinstance(logins, list):
        registry_logins = dict(variables.get("registry_logins") or {})
        for entry in logins:
            if isinstance(entry, dict) and entry.get("registry") and entry["registry"] not in registry_logins:
                registry_logins[str(entry["registry"])] = {"username": entry.get("username"), "password": entry.get("password")}
                if str(entry["registry"]) == "nvcr.io" and "ngc_login_api_key" not in variables and entry.get("password"):
                    password = entry["password"]
                    ours["ngc_login_api_key"] = password if isinstance(password, (dict, Secret)) else Secret(
                        "ngc_login_api_key", str(password))
        ours["registry_logins"] = registry_logins
    return ours
