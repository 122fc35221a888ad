"""The Debian packages the lab needs on this machine, and installing the missing ones."""

import os
import subprocess

from provision.lab.commands import LabError, run

# What each package gives the lab on this machine (the hosts' own packages, tini and sshd
# among them, come into their base root filesystems through mmdebstrap).
LAB_APT_PACKAGES = (
    "mmdebstrap",         # builds the hosts' base root filesystems
    "apt-cacher-ng",      # the hosts' only way to Debian packages
    "iproute2",           # bridge, network namespaces, veths (ip)
    "util-linux",         # unshare, nsenter, setsid, mount
    "openssh-client",     # ssh-keygen for lab keys; ssh for tests
    "systemd-container",  # systemd-nspawn for hosts booted with systemd
    "ca-certificates",    # mmdebstrap fetching from https mirrors
    "docker-registry",    # the lab's container registry (stands in for nvcr.io and others)
    "apache2-utils",      # htpasswd -B for the registry's password logins
    "qemu-user-static",   # arm64 programs on this amd64 machine (docker builds for linux/arm64)
    "binfmt-support",     # update-binfmts, registering qemu's handlers (emulation.py)
    "arch-test",          # mmdebstrap checks with it that arm64 programs run here (arm64 hosts' bases)
)


def missing_packages(packages: tuple[str, ...] = LAB_APT_PACKAGES) -> list[str]:
    """The packages of `packages` that dpkg does not list as installed on this machine."""
    missing = []
    for package in packages:
        query = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                               capture_output=True, text=True)
        if query.returncode != 0 or not query.stdout.endswith(" installed"):
            missing.append(package)
    return missing


def ensure_packages() -> list[str]:
    """Install the lab's missing packages with apt-get; return the names installed.

    The system apt-cacher-ng service that the package starts would hold port 3142
    on every address, so it is stopped and disabled: the lab runs its own.
    """
    missing = missing_packages()
    if not missing:
        return []
    if os.geteuid() != 0:
        raise LabError(f"the lab needs root to install {' '.join(missing)}")
    env_argv = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_argv, "apt-get", "update"], what="apt-get update for the lab", timeout=600)
    run([*env_argv, "apt-get", "install", "-y", "--no-install-recommends", *missing],
        what="installing the lab's packages", timeout=1200)
    if "apt-cacher-ng" in missing:
        if os.path.isdir("/run/systemd/system"):
            stop_service = ["systemctl", "disable", "--now", "apt-cacher-ng"]
        else:
            stop_service = ["/etc/init.d/apt-cacher-ng", "stop"]
        run(stop_service, check=False, what="stopping the system apt-cacher-ng")
    return missing
