"""The files that tell the tool about the lab: an Ansible-shaped inventory and known_hosts."""

from pathlib import Path

import yaml

from provision.lab import keys
from provision.lab.aptcache import PROXY_URL
from provision.lab.host import LabHost


def inventory(hosts: list[LabHost], client_key: Path) -> dict:
    """The lab's inventory: every host as root, the lab key and the lab's apt proxy."""
    groups: dict = {"lab": {"hosts": {h.name: {"ansible_host": h.address, "ansible_user": "root"}
                                      for h in hosts}}}
    systemd_hosts = [h.name for h in hosts if h.systemd]
    if systemd_hosts:
        groups["lab_systemd"] = {"hosts": {name: None for name in systemd_hosts}}
    return {"all": {"vars": {"ssh_key": str(client_key.resolve()), "base_apt_proxy": PROXY_URL},
                    "children": groups}}


def write_inventory(path: Path, hosts: list[LabHost], client_key: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(inventory(hosts, client_key), sort_keys=False, default_flow_style=False)
    path.write_text("# The provision lab's hosts (written by provision/lab; do not edit).\n" + text)


def write_known_hosts(path: Path, host_keys: dict[LabHost, str]) -> None:
    """known_hosts vouching for each host's key at its address."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(keys.known_hosts_line(host.address, key) for host, key in host_keys.items()))
