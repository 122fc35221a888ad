"""What the lab's stand-in vendor packages are: names, versions, dependencies and files, as data.

Every package here is a LAB STAND-IN carrying a vendor's package name, so that the roles install
them with the vendors' documented commands. Payload files live in ``payload/``; ``@KEY@`` in them
is replaced at build time and ``#@include FILE`` pastes a shared snippet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAINTAINER = "Lab stand-ins <repo@lab.invalid>"

DOCKER_ENGINE_VERSION = "28.5.1"
CONTAINERD_VERSION = "1.7.28"
BUILDX_VERSION = "0.29.1"
COMPOSE_VERSION = "2.40.0"
TOOLKIT_VERSIONS = ("1.17.8-1", "1.18.0-1", "1.20.0-1")  # 1.20.0: the current release (roles default to it)
SERVER_DRIVER = ("580-server", "580.95.05")  # Ubuntu archive: branch name, driver version
CUDA_REPO_DRIVERS = ("580.95.05", "590.44.01")  # NVIDIA's CUDA repo: two branches, pinning picks
CUDA_PINNED_BRANCH = "580"
CUDA_KEYRING_VERSION = "1.1-1"
# Distribution folders of the CUDA repository the lab serves (each a flat repo of its own).
CUDA_DISTROS = ("ubuntu2204", "ubuntu2404", "debian12")
APPTAINER_VERSION = "1.5.0"

# Docker's version suffix per codename (their packages read 5:28.5.1-1~ubuntu.24.04~noble).
_DOCKER_DISTRO = {
    "bookworm": "debian.12",
    "trixie": "debian.13",
    "jammy": "ubuntu.22.04",
    "noble": "ubuntu.24.04",
}


@dataclass(frozen=True)
class Payload:
    """A file rendered from ``payload/<source>`` with extra ``@KEY@`` substitutions."""

    source: str
    mode: int = 0o755
    subs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DebRecipe:
    """One stand-in package. ``files`` maps an absolute target path to a Payload or raw bytes."""

    name: str
    version: str
    stands_in_for: str
    arch: str = "all"
    depends: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    files: tuple[tuple[str, Payload | bytes], ...] = ()
    postinst: tuple[str, ...] = ()  # snippets run by postinst after it records itself
    postrm: tuple[str, ...] = ()
    subs: tuple[tuple[str, str], ...] = field(default=())

    @property
    def upstream_version(self) -> str:
        """The version without epoch and Debian revision: 5:28.5.1-1~x -> 28.5.1."""
        return self.version.split(":", 1)[-1].rsplit("-", 1)[0]

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.split(':', 1)[-1]}_{self.arch}.deb"


def docker_version(upstream: str, codename: str, epoch: str = "") -> str:
    """Docker's version scheme: 5:28.5.1-1~ubuntu.24.04~noble (only the engine has an epoch)."""
    return f"{epoch}{upstream}-1~{_DOCKER_DISTRO.get(codename, codename)}~{codename}"


def docker_plugin_recipes(codename: str, arch: str) -> list[DebRecipe]:
    """containerd.io and the two CLI plugins of Docker CE (docker-ce itself is repackaged)."""
    plugins = [
        ("docker-buildx-plugin", "buildx", BUILDX_VERSION, "Docker Buildx",
         f"github.com/docker/buildx v{BUILDX_VERSION} lab-standin"),
        ("docker-compose-plugin", "compose", COMPOSE_VERSION, "Docker Compose",
         f"Docker Compose version v{COMPOSE_VERSION}"),
    ]
    recipes = [
        DebRecipe(
            name="containerd.io",
            version=docker_version(CONTAINERD_VERSION, codename),
            stands_in_for="Docker CE's containerd.io (Debian's containerd and runc do the work)",
            arch=arch,
            depends=("containerd", "runc"),
        )
    ]
    for name, plugin, version, description, version_line in plugins:
        recipes.append(
            DebRecipe(
                name=name,
                version=docker_version(version, codename),
                stands_in_for=f"Docker CE's {description} CLI plugin",
                arch=arch,
                files=((f"/usr/libexec/docker/cli-plugins/docker-{plugin}", Payload(
                    "docker-cli-plugin",
                    subs=(("PLUGIN", plugin), ("PLUGIN_VERSION", f"v{version}"),
                          ("PLUGIN_DESCRIPTION", description), ("PLUGIN_VERSION_LINE", version_line)),
                )),),
            )
        )
    return recipes


_TOOLKIT_CONFIG = b"""# LAB STAND-IN for /etc/nvidia-container-runtime/config.toml (NVIDIA Container Toolkit)
#accept-nvidia-visible-devices-as-volume-mounts = false
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"

[nvidia-container-cli]
environment = []
ldconfig = "@/sbin/ldconfig"
load-kmods = true

[nvidia-container-runtime]
log-level = "info"
mode = "auto"
runtimes = ["runc", "crun"]
"""


def toolkit_recipes(arch: str) -> list[DebRecipe]:
    """The four NVIDIA Container Toolkit packages in every version of TOOLKIT_VERSIONS.

    As in NVIDIA's repository, 1.18 and later require the same version of each other exactly;
    1.17 allowed libnvidia-container-tools and libnvidia-container1 to float up to 2.0.
    """
    recipes = []
    for version in TOOLKIT_VERSIONS:
        upstream = version.rsplit("-", 1)[0]
        exact = tuple(int(p) for p in upstream.split(".")[:2]) >= (1, 18)

        def same(package: str) -> tuple[str, ...]:
            if exact:
                return (f"{package} (= {version})",)
            return (f"{package} (>= {version})", f"{package} (<< 2.0.0)")

        recipes += [
            DebRecipe("libnvidia-container1", version, "NVIDIA's libnvidia-container1", arch,
                      depends=("libc6",)),
            DebRecipe("libnvidia-container-tools", version, "NVIDIA's libnvidia-container-tools",
                      arch, depends=same("libnvidia-container1"),
                      files=(("/usr/bin/nvidia-container-cli", Payload("nvidia-container-cli")),)),
            DebRecipe("nvidia-container-toolkit-base", version,
                      "NVIDIA Container Toolkit base (nvidia-ctk)", arch, depends=("jq",),
                      files=(("/usr/bin/nvidia-ctk", Payload("nvidia-ctk")),
                             ("/usr/bin/nvidia-container-runtime", Payload("nvidia-container-runtime")),
                             ("/etc/nvidia-container-runtime/config.toml", _TOOLKIT_CONFIG))),
            DebRecipe("nvidia-container-toolkit", version, "NVIDIA Container Toolkit", arch,
                      depends=(f"nvidia-container-toolkit-base (= {version})",
                               *same("libnvidia-container-tools")),
                      files=(("/usr/bin/nvidia-container-runtime-hook",
                              Payload("nvidia-container-runtime-hook")),)),
        ]
    return recipes


def _driver(name: str, version: str, driver_version: str, flavour: str, stands_in_for: str,
            arch: str, conflicts: tuple[str, ...], with_smi: bool, with_module: bool) -> DebRecipe:
    subs = (("DRIVER_VERSION", driver_version), ("DRIVER_FLAVOUR", flavour))
    return DebRecipe(
        name=name, version=version, stands_in_for=stands_in_for, arch=arch, conflicts=conflicts,
        files=(("/usr/bin/nvidia-smi", Payload("nvidia-smi")),) if with_smi else (),
        postinst=("driver-postinst.sh",) if with_module else (),
        postrm=("driver-postrm.sh",) if with_module else (),
        subs=subs,
    )


_ROUTE_B = ("nvidia-open", "cuda-drivers")


def ubuntu_archive_recipes(arch: str) -> dict[str, list[DebRecipe]]:
    """Route A, by component: ubuntu-drivers (main) and the -server driver (restricted)."""
    branch, driver_version = SERVER_DRIVER
    version = f"{driver_version}-0ubuntu1"
    return {
        "main": [
            DebRecipe("ubuntu-drivers-common", "1:0.10.0~lab1", "Ubuntu's ubuntu-drivers-common",
                      arch, files=(("/usr/bin/ubuntu-drivers", Payload("ubuntu-drivers")),),
                      subs=(("SERVER_BRANCHES", branch),)),
        ],
        "restricted": [
            _driver(f"nvidia-driver-{branch}", version, driver_version, "proprietary",
                    f"Ubuntu's nvidia-driver-{branch}", arch, _ROUTE_B, False, True),
            _driver(f"nvidia-utils-{branch}", version, driver_version, "proprietary",
                    f"Ubuntu's nvidia-utils-{branch}", arch, _ROUTE_B, True, False),
        ],
    }


def cuda_repo_recipes(arch: str) -> list[DebRecipe]:
    """Route B drivers, the same in every distribution folder (cuda-keyring is made per folder)."""
    branch = CUDA_PINNED_BRANCH
    pinning = f"""# LAB STAND-IN for NVIDIA's nvidia-driver-pinning-{branch}: keep the driver on branch {branch}.
Package: nvidia-open cuda-drivers
Pin: version {branch}.*
Pin-Priority: 1000
""".encode()
    recipes = [
        DebRecipe(f"nvidia-driver-pinning-{branch}", f"{CUDA_REPO_DRIVERS[0]}-1",
                  f"NVIDIA's nvidia-driver-pinning-{branch}",
                  files=((f"/etc/apt/preferences.d/nvidia-driver-pinning-{branch}", pinning),)),
    ]
    route_a = (f"nvidia-driver-{SERVER_DRIVER[0]}", f"nvidia-utils-{SERVER_DRIVER[0]}")
    for driver_version in CUDA_REPO_DRIVERS:
        for name, flavour in (("nvidia-open", "open"), ("cuda-drivers", "proprietary")):
            other = tuple(n for n in _ROUTE_B if n != name)
            recipes.append(_driver(name, f"{driver_version}-1", driver_version, flavour,
                                   f"NVIDIA's {name} (CUDA repository)", arch, other + route_a,
                                   True, True))
    return recipes


def cuda_keyring_recipe(distro: str, cuda_arch: str, repo_url: str, key: bytes) -> DebRecipe:
    """cuda-keyring for one distribution folder: the key and a sources file naming the lab URL."""
    source = (f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {repo_url}/ /\n").encode()
    return DebRecipe(
        "cuda-keyring", CUDA_KEYRING_VERSION, "NVIDIA's cuda-keyring",
        files=(("/usr/share/keyrings/cuda-archive-keyring.gpg", key),
               (f"/etc/apt/sources.list.d/cuda-{distro}-{cuda_arch}.list", source)),
    )


def apptainer_recipe(codename: str, arch: str) -> DebRecipe:
    return DebRecipe(
        "apptainer", f"{APPTAINER_VERSION}-1~{codename}", "Apptainer (ppa:apptainer/ppa)", arch,
        depends=("squashfs-tools", "siftool", "jq", "curl", "ca-certificates"),
        files=(("/usr/bin/apptainer", Payload("apptainer")),
               ("/etc/apparmor.d/apptainer", Payload("apparmor-apptainer", mode=0o644)),
               ("/etc/apptainer/apptainer.conf", Payload("apptainer.conf", mode=0o644))),
    )
