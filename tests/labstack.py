"""The lab's stand-ins for the GPU build-host stack, shared by the tests that provision it for real.

Stand-ins (tests/standins/): Docker's, NVIDIA's and Apptainer's repositories serve packages of the
vendors' names; a planted PCI tree plays a Tesla V100; the lab registry plays nvcr.io, its login
the NGC key. A GPU host presents itself as Ubuntu 24.04 or 22.04 (os-release, kernel release and
kernel packages) or stays the Debian 12 it is. The roles see only that their URLs differ.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision.lab.boot import PCI_STANDIN_DIR
from tests.helpers import write
from tests.standins import build_standin_repos, ensure_packages, lab_url, serve
from tests.standins.debs import download_debian_deb
from tests.standins.recipes import UBUNTU_KERNELS

BUILDER_ROLES = ["base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer",
                 "ngc_login", "verify"]
REPOS_DIR = Path("/var/cache/provision-lab/standin-repos")
# Each architecture's stand-in repositories: their folder and the port they are served on (lab bridge).
ARCH_REPOS = {"amd64": (REPOS_DIR, 8089), "arm64": (Path("/var/cache/provision-lab/standin-repos-arm64"), 8090)}
NATIVE_ARCH = "amd64"  # this machine's; an arm64 lab host runs under qemu-user
V100 = ("0000:00:1e.0", "10de:1db1", "0x030200")
T4G = ("0000:00:1f.0", "10de:1eb4", "0x030200")  # AWS g5g's GPU (Graviton2, arm64)
GPUS = {"amd64": V100, "arm64": T4G}
CUDA_REPO_ARCH = {"amd64": "x86_64", "arm64": "sbsa"}  # NVIDIA's CUDA repository folder per architecture
ARCHIVE_KEY = "/usr/share/keyrings/lab-ubuntu-archive.asc"
CUDA_IMAGE_DIR = "/var/lib/lab-cuda-image"


@dataclass(frozen=True)
class Release:
    """What a lab host presents itself as."""

    os_id: str
    version_id: str
    codename: str
    pretty: str

    @property
    def cuda_folder(self) -> str:
        return f"{self.os_id}{self.version_id.replace('.', '')}"


UBUNTU_2404 = Release("ubuntu", "24.04", "noble", "Ubuntu 24.04.3 LTS")
UBUNTU_2204 = Release("ubuntu", "22.04", "jammy", "Ubuntu 22.04.5 LTS")
DEBIAN_12 = Release("debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)")

# LAB STAND-IN for the running kernel's release: lab hosts share this machine's kernel, so an
# Ubuntu host's `uname -r` is played by this wrapper (first in PATH), as Ubuntu's kernel names itself.
UNAME_STANDIN = """#!/bin/sh
# LAB STAND-IN for uname(1) on an Ubuntu host running kernel {release} (tests/labstack.py).
real=$(/usr/bin/uname -r)
/usr/bin/uname "$@" | sed "s/$real/{release}/"
"""


def _os_release(release: Release) -> str:
    # /usr/lib/os-release as Ubuntu's base-files writes it (os-release(5) fields the tool reads).
    return (f'PRETTY_NAME="{release.pretty}"\nNAME="Ubuntu"\nVERSION_ID="{release.version_id}"\n'
            f'VERSION="{release.pretty.removeprefix("Ubuntu ")}"\nVERSION_CODENAME={release.codename}\n'
            f'ID=ubuntu\nID_LIKE=debian\nHOME_URL="https://www.ubuntu.com/"\nUBUNTU_CODENAME={release.codename}\n')


class Stack:
    """Stand-in repositories served on the lab bridge and a registry with an NGC-style login."""

    def __init__(self, lab, ngc_key: str, arch: str = NATIVE_ARCH):
        ensure_packages()
        self.lab, self.arch = lab, arch
        directory, port = ARCH_REPOS[arch]
        self.repos = build_standin_repos(directory, arch, f"http://10.200.0.1:{port}")
        self.server = serve(directory, port=port)
        self.registry = lab.registry({"$oauthtoken": ngc_key})
        self.releases: dict[str, Release] = {}

    def stop(self) -> None:
        self.server.stop()

    def make_gpu_host(self, name: str, release: Release = UBUNTU_2404, flavour: str = "generic") -> None:
        """A systemd host of the stack's architecture with a GPU stand-in (V100; T4G on arm64), presenting
        itself as RELEASE; an Ubuntu one runs kernel <ABI>-FLAVOUR and has Ubuntu's archive (route A's
        stand-in) in its sources."""
        self.lab.up([name], systemd=True, arch="" if self.arch == NATIVE_ARCH else self.arch)
        gpu = GPUS[self.arch]
        self.lab.plant_gpu(name, [gpu])
        root = self.lab.rootfs(name)
        # A fresh machine boots with nouveau bound to the GPU (sysfs: SLOT/driver -> .../drivers/nouveau).
        (root / PCI_STANDIN_DIR / gpu[0] / "driver").symlink_to("../../../bus/pci/drivers/nouveau")
        self.releases[name] = release
        if release.os_id == "ubuntu":
            self._present_as_ubuntu(name, root, release, flavour)
        image = root / CUDA_IMAGE_DIR.lstrip("/")  # a CUDA image's stand-in: Debian's busybox of the host's architecture
        busybox = download_debian_deb(self.repos.root.parent / "downloads", "busybox-static", self.arch)
        subprocess.run(["dpkg-deb", "-x", str(busybox), str(image)], check=True)
        subprocess.run(["chroot", str(image), "/bin/busybox", "--install", "-s", "/bin"], check=True)
        self.lab.stop(name)
        self.lab.start(name)

    def _present_as_ubuntu(self, name: str, root: Path, release: Release, flavour: str) -> None:
        abi = UBUNTU_KERNELS[release.codename]
        (root / "usr/lib/os-release").write_text(_os_release(release))
        write(root / "etc/lsb-release", f"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={release.version_id}\n"
              f"DISTRIB_CODENAME={release.codename}\nDISTRIB_DESCRIPTION=\"{release.pretty}\"\n")
        uname = write(root / "usr/local/bin/uname", UNAME_STANDIN.format(release=f"{abi}-{flavour}"))
        uname.chmod(0o755)
        archive = self.repos.ubuntu_archive
        write(root / ARCHIVE_KEY.lstrip("/"), archive.key_file.read_text())
        write(root / "etc/apt/sources.list.d/ubuntu-archive.list",
              archive.source(release.codename).one_line(self.repos.base_url, ARCHIVE_KEY))
        # The installed kernel, as ubuntu-drivers finds it (kerneldetection.py reads linux-image-*).
        pool = self.repos.root / archive.path / "pool/main/l"
        debs = [next(pool.glob(f"linux-image-{abi}-{flavour}/*.deb")),
                next(pool.glob(f"linux-image-{flavour}/*_{abi}.*.deb"))]
        kernel_dir = root / "var/cache/lab-kernel"
        kernel_dir.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            shutil.copy(deb, kernel_dir / deb.name)
        self.lab.exec(name, "dpkg -i /var/cache/lab-kernel/*.deb > /dev/null && rm -rf /var/cache/lab-kernel")

    def variables(self) -> dict:
        base, repos = self.repos.base_url, self.repos
        return {
            "ssh_key": str(self.lab.client_key),
            "base_apt_proxy": "http://10.200.0.1:3142",
            "base_apt_proxy_direct": ["10.200.0.1"],
            "docker_ce_daemon_settings": {"storage-driver": "vfs", "insecure-registries": [self.registry]},
            "nvidia_container_toolkit_repo_url": lab_url(
                "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)", base),
            "nvidia_container_toolkit_key_url": repos.nvidia_container_toolkit.key_url(base),
            "apptainer_ppa_url": repos.apptainer.url(base),
            "apptainer_ppa_key_url": repos.apptainer.key_url(base),
            "apptainer_deb_url": f"{base}/{repos.apptainer_release_deb}",
            "nvidia_driver_kernel_headers": False,  # stand-in gap: no headers package for this kernel
            "verify_docker": False,  # stand-in gap: the runtime hook injects no nvidia-smi into containers
            "verify_apptainer_image": CUDA_IMAGE_DIR,  # a busybox sandbox: --nv binds the stand-in nvidia-smi in
            "ngc_login_registry": self.registry,
            "ngc_login_api_key": {"secret_env": "NGC_API_KEY"},
        }

    def host_variables(self, name: str) -> dict:
        """The vendor URLs for the release host NAME presents, pointed at the lab."""
        release = self.releases.get(name, DEBIAN_12)
        base, repos = self.repos.base_url, self.repos
        docker = repos.docker if release.os_id == "ubuntu" else repos.docker_debian
        cuda = f"{repos.cuda.url(base)}/{release.cuda_folder}/{CUDA_REPO_ARCH[self.arch]}"
        return {
            "docker_ce_repo_url": docker.url(base),
            "docker_ce_key_url": docker.key_url(base),
            "nvidia_driver_cuda_repo_url": cuda,
            "nvidia_driver_cuda_key_url": f"{cuda}/{repos.cuda.key_path.rsplit('/', 1)[1]}",
        }

    def inventory(self, directory: Path, hosts: dict[str, dict], roles: list[str] | None = None) -> Path:
        """An inventory of these lab hosts ({name: extra host vars}) with the stack's variables
        (only those of ROLES, when given: a variable of no role on the host is refused)."""
        def wanted(variables: dict) -> dict:
            return {k: v for k, v in variables.items()
                    if roles is None or k == "ssh_key" or any(k.startswith(role + "_") for role in roles)}
        entries = {name: {"ansible_host": self.lab.host(name).address, "ansible_user": "ubuntu",
                          **wanted(self.host_variables(name)), **extra}
                   for name, extra in hosts.items()}
        write(directory / "inventory.yml", json.dumps({"all": {"vars": wanted(self.variables()), "hosts": entries}}, indent=2))
        keep_known_hosts(self.lab, directory, hosts)
        return directory


def keep_known_hosts(lab, directory: Path, names) -> None:
    """directory/known_hosts with the lab's vouched keys of these hosts only (not the whole lab's)."""
    addresses = {lab.host(name).address for name in names}
    (directory / "known_hosts").write_text("".join(
        line + "\n" for line in lab.known_hosts_path.read_text().splitlines() if line.split()[0] in addresses))


@contextlib.contextmanager
def running_stack(lab, ngc_key: str, arch: str = NATIVE_ARCH):
    """A Stack for a test module, NGC_API_KEY set to ngc_key while it lives; its servers stopped after."""
    before = os.environ.get("NGC_API_KEY")
    os.environ["NGC_API_KEY"] = ngc_key
    made = Stack(lab, ngc_key, arch)
    try:
        yield made
    finally:
        made.stop()
        if before is None:
            os.environ.pop("NGC_API_KEY", None)
        else:
            os.environ["NGC_API_KEY"] = before
