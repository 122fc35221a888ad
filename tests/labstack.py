"""The lab's stand-ins for the GPU build-host stack, shared by the tests that provision it for real.

Stand-ins (tests/standins/): Docker's, NVIDIA's and Apptainer's repositories serve packages of the
vendors' names; a planted PCI tree plays a Tesla V100; the lab registry plays nvcr.io, its login
the NGC key. The roles see only that their URLs differ.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.helpers import write
from tests.standins import build_standin_repos, ensure_packages, lab_url, serve

BUILDER_ROLES = ["base", "helper_tools", "nvidia_driver", "docker_ce", "nvidia_container_toolkit", "apptainer",
                 "ngc_login", "verify"]
REPOS_DIR = Path("/var/cache/provision-lab/standin-repos")
V100 = ("0000:00:1e.0", "10de:1db1", "0x030200")
ARCHIVE_KEY = "/usr/share/keyrings/lab-ubuntu-archive.asc"
CUDA_IMAGE_DIR = "/var/lib/lab-cuda-image"


class Stack:
    """Stand-in repositories served on the lab bridge and a registry with an NGC-style login."""

    def __init__(self, lab, ngc_key: str):
        ensure_packages()
        self.lab = lab
        self.repos = build_standin_repos(REPOS_DIR)
        self.server = serve(REPOS_DIR)
        self.registry = lab.registry({"$oauthtoken": ngc_key})

    def stop(self) -> None:
        self.server.stop()

    def make_gpu_host(self, name: str) -> None:
        """A systemd host with a V100 stand-in and Ubuntu's archive (route A's stand-in) in its sources."""
        self.lab.up([name], systemd=True)
        self.lab.plant_gpu(name, [V100])
        root = self.lab.rootfs(name)
        write(root / ARCHIVE_KEY.lstrip("/"), self.repos.ubuntu_archive.key_file.read_text())
        write(root / "etc/apt/sources.list.d/ubuntu-archive.list",
              self.repos.ubuntu_archive.sources[0].one_line(self.repos.base_url, ARCHIVE_KEY))
        image = root / CUDA_IMAGE_DIR.lstrip("/")
        (image / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/busybox", image / "bin" / "busybox")
        subprocess.run(["chroot", str(image), "/bin/busybox", "--install", "-s", "/bin"], check=True)
        self.lab.stop(name)
        self.lab.start(name)

    def variables(self) -> dict:
        base, repos = self.repos.base_url, self.repos
        return {
            "ssh_key": str(self.lab.client_key),
            "base_apt_proxy": "http://10.200.0.1:3142",
            "base_apt_proxy_direct": ["10.200.0.1"],
            "docker_ce_repo_url": repos.docker.url(base),
            "docker_ce_key_url": repos.docker.key_url(base),
            "docker_ce_daemon_settings": {"storage-driver": "vfs", "insecure-registries": [self.registry]},
            "nvidia_container_toolkit_repo_url": lab_url(
                "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)", base),
            "nvidia_container_toolkit_key_url": repos.nvidia_container_toolkit.key_url(base),
            "apptainer_ppa_url": repos.apptainer.url(base),
            "apptainer_ppa_key_url": repos.apptainer.key_url(base),
            "nvidia_driver_kernel_headers": False,  # stand-in gap: no headers package for this kernel
            "verify_docker": False,  # stand-in gap: the runtime hook injects no nvidia-smi into containers
            "verify_apptainer_image": CUDA_IMAGE_DIR,  # a busybox sandbox: --nv binds the stand-in nvidia-smi in
            "ngc_login_registry": self.registry,
            "ngc_login_api_key": {"secret_env": "NGC_API_KEY"},
        }

    def inventory(self, directory: Path, hosts: dict[str, dict]) -> Path:
        """An inventory of these lab hosts ({name: extra host vars}) with the stack's variables."""
        entries = {name: {"ansible_host": self.lab.host(name).address, "ansible_user": "ubuntu", **extra}
                   for name, extra in hosts.items()}
        write(directory / "inventory.yml", json.dumps({"all": {"vars": self.variables(), "hosts": entries}}, indent=2))
        addresses = {self.lab.host(name).address for name in hosts}
        (directory / "known_hosts").write_text("".join(
            line + "\n" for line in self.lab.known_hosts_path.read_text().splitlines() if line.split()[0] in addresses))
        return directory
