"""invoke tasks for the lab: `invoke lab.up --hosts 3`, `invoke lab.status`, `invoke lab.down`."""

from invoke import Collection, task
from invoke.exceptions import Exit

from provision.lab.commands import LabError

# Lab and ensure_packages are imported inside each task: `invoke --list` should not load the lab.


@task(help={"hosts": "how many hosts to bring up (lab1, lab2, ...; labsd1, ... with --systemd)",
            "systemd": "boot the hosts with systemd (for services such as docker)",
            "arch": "arm64: hosts of that architecture under qemu-user emulation (labarm1, ...; minutes to boot)"})
def up(c, hosts=3, systemd=False, arch=""):
    """Bring lab hosts up on this machine and write their inventory."""
    from provision.lab.lab import Lab
    from provision.lab.packages import ensure_packages

    if hosts < 1:
        raise Exit(f"lab.up: --hosts must be at least 1, not {hosts}")
    lab, prefix = Lab(), ("labsd" if systemd else "lab") + ("arm" if arch else "")
    try:
        ensure_packages()
        made = lab.up([f"{prefix}{n}" for n in range(1, hosts + 1)], systemd=systemd, arch=arch)
    except LabError as exc:
        raise Exit(f"lab.up: {exc}") from None
    for made_host in made:
        login = f"ssh -i {lab.client_key} root@{made_host.address}"
        print(f"{made_host.name:<10} {made_host.address:<14} {login}")
    print(f"inventory: {lab.inventory_path}\nknown_hosts: {lab.known_hosts_path}")


@task
def down(c):
    """Tear the whole lab down: hosts, namespaces, mounts, the bridge and the apt cache."""
    from provision.lab.lab import Lab

    try:
        Lab().down()
    except LabError as exc:
        raise Exit(f"lab.down: {exc}") from None


@task
def status(c):
    """List the lab's hosts, whether each runs, and whether the apt cache runs."""
    from provision.lab.lab import Lab

    lab = Lab()
    for made_host in lab.hosts():
        state = "running" if lab.is_running(made_host.name) else "stopped"
        kind = "systemd" if made_host.systemd else "tini"
        print(f"{made_host.name:<10} {made_host.address:<14} {kind:<8} {made_host.arch or 'native':<7} {state}")
    print(f"apt cache: {'running' if lab.aptcache_running() else 'stopped'}; hosts: {len(lab.hosts())}")


lab = Collection("lab", up, down, status)
