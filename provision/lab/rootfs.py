"""The hosts' read-only base root filesystems: built once with mmdebstrap, cached by recipe hash."""

import fcntl
import hashlib
import inspect
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from provision.lab import emulation, mirror
from provision.lab.commands import LabError, run

CACHE_DIR = Path("/var/cache/provision-lab")
SUITE = "bookworm"
BASE_PACKAGES = ("openssh-server", "sudo", "ca-certificates", "gnupg", "iproute2", "tini")
SYSTEMD_PACKAGES = ("systemd", "systemd-sysv", "dbus")
SUDO_USER = "ubuntu"

# Hosts with the vendor's own Apptainer: Debian's unstable suite carries apptainer 1.4.5 (it needs
# glibc 2.38, newer than bookworm's), with Slurm and munge of the same suite for cluster hosts.
# Such hosts boot with pivot_root (boot.py): Apptainer refuses to run in a chroot.
APPTAINER_FLAVOUR = "apptainer"
# Builders with the vendor's own Apptainer beside Debian's docker engine and buildx, of the same suite
# (no systemd: sid's systemd needs cgroup v2 and this machine has v1; the host gets its own cgroups).
BUILDER_FLAVOUR = "apptainer-docker"
_APPTAINER_PACKAGES = ("apptainer", "squashfs-tools", "uidmap", "tzdata")  # tzdata: Apptainer binds /etc/localtime
FLAVOUR_SUITES = {APPTAINER_FLAVOUR: "sid", BUILDER_FLAVOUR: "sid"}
FLAVOUR_PACKAGES = {
    APPTAINER_FLAVOUR: (*_APPTAINER_PACKAGES, "slurm-wlm", "munge", "procps", "busybox-static", "iptables"),
    BUILDER_FLAVOUR: (*_APPTAINER_PACKAGES, "docker.io", "docker-cli", "docker-buildx", "siftool", "procps", "busybox-static",
                      "iptables")}
# Flavours whose hosts run dockerd: they boot in cgroups of their own (boot.py).
DOCKER_FLAVOURS = frozenset({BUILDER_FLAVOUR})
# The mirror's snapshot of the unstable suite is past its Release's Valid-Until.
FLAVOUR_APT_OPTIONS = {flavour: {"Acquire::Check-Valid-Until": "false"} for flavour in FLAVOUR_SUITES}
# This machine's permitted capability set lacks one bit; Apptainer's default `full` asks for all of them.
APPTAINER_CONF = "etc/apptainer/apptainer.conf"
APPTAINER_CONF_CHANGES = (("root default capabilities = full", "root default capabilities = file"),)

# Where a host without systemd leaves its request to be rebooted, for the lab's supervisor.
REBOOT_FLAG = "var/lib/provision-lab/reboot-requested"

REBOOT_STAND_IN = f"""#!/bin/sh
# LAB STAND-IN for reboot(8), installed by provision's test lab (provision/lab/rootfs.py).
# Lab hosts without systemd have no init system that could reboot them. This asks the
# lab's supervisor, which runs outside the host, to boot the host again on the same
# disk: it leaves a flag, then stops PID 1; the supervisor sees the flag and restarts
# the host with fresh processes, a fresh /run and a new boot id.
mkdir -p /{REBOOT_FLAG.rsplit('/', 1)[0]}
: > /{REBOOT_FLAG}
sync
kill -TERM 1
"""

SSHD_CONFIG = """# provision lab: one fresh ed25519 host key per host, keys only.
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
"""

APT_NO_PKGCACHE = """// provision lab: no binary caches, so each host's writable layer stays a few MB.
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""

WRITABLE_UNIT_NAME = "provision-lab-writable.service"
WRITABLE_UNIT = """# provision lab: nspawn mounts the cgroup v1 controllers and /proc/sys read-only. Docker
# writes its cgroups and net.ipv4.ip_forward, which belong to this host alone: its own
# cgroups (provision-lab/<host> on the lab's machine) and its own network namespace.
[Unit]
Description=Writable cgroups and /proc/sys/net for docker (provision lab)
DefaultDependencies=no
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for c in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$c" || true; done'
ExecStart=/bin/sh -c 'mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net'

[Install]
WantedBy=sysinit.target
"""


def _base_files(systemd: bool, carried_apt_options: dict[str, str]) -> tuple:
    """(path, text, mode) of each file the lab writes into a base of this kind."""
    files = [
        (f"etc/sudoers.d/{SUDO_USER}", f"{SUDO_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440),
        ("etc/ssh/sshd_config.d/provision-lab.conf", SSHD_CONFIG, 0o644),
        ("etc/apt/apt.conf.d/90provision-lab-no-pkgcache", APT_NO_PKGCACHE, 0o644),
    ]
    if carried_apt_options:
        lines = "".join(f'{name} "{value}";\n' for name, value in sorted(carried_apt_options.items()))
        files.append(("etc/apt/apt.conf.d/90provision-lab-mirror",
                      "// provision lab: as on the lab's machine, to use the same mirror.\n" + lines, 0o644))
    if systemd:
        files.append((f"etc/systemd/system/{WRITABLE_UNIT_NAME}", WRITABLE_UNIT, 0o644))
    else:
        files.append(("usr/sbin/reboot", REBOOT_STAND_IN, 0o755))
    return tuple(files)


def _base_links(systemd: bool) -> tuple:
    """(path, target) of each symlink the lab makes in a base of this kind."""
    if not systemd:
        return ()
    return ((f"etc/systemd/system/sysinit.target.wants/{WRITABLE_UNIT_NAME}",
             f"/etc/systemd/system/{WRITABLE_UNIT_NAME}"),
            ("etc/systemd/system/apt-daily.timer", "/dev/null"),  # no surprise apt runs
            ("etc/systemd/system/apt-daily-upgrade.timer", "/dev/null"))


@dataclass(frozen=True)
class BaseRecipe:
    """Everything a base root filesystem is built from; its hash names the cached build."""

    systemd: bool
    packages: tuple[str, ...]
    source_lines: tuple[str, ...]
    files: tuple[tuple[str, str, int], ...]
    links: tuple[tuple[str, str], ...]
    flavour: str = field(default="", repr=False)  # "" or a key of FLAVOUR_SUITES
    arch: str = field(default="", repr=False)  # "" for this machine's; another Debian architecture runs under qemu-user (emulation.py)

    @property
    def suite(self) -> str:
        return FLAVOUR_SUITES.get(self.flavour, SUITE)

    @classmethod
    def for_this_machine(cls, systemd: bool, flavour: str = "", arch: str = "") -> "BaseRecipe":
        if flavour and (flavour not in FLAVOUR_SUITES or systemd):
            raise LabError(f"no lab base of flavour {flavour!r} (systemd={systemd})")
        if arch and arch not in emulation.HANDLERS:
            raise LabError(f"no lab base for architecture {arch!r} (known: {', '.join(emulation.HANDLERS)})")
        packages = BASE_PACKAGES + (SYSTEMD_PACKAGES if systemd else ()) + FLAVOUR_PACKAGES.get(flavour, ())
        suite = FLAVOUR_SUITES.get(flavour)
        source_lines = tuple(
            f"deb {source.uri} {suite or name} {' '.join(source.components)}"
            for source in mirror.apt_sources() for name in source.suites
            if name.split("-")[0] == SUITE and (not suite or name == SUITE))
        if not source_lines:
            raise LabError(f"this machine's apt has no sources for Debian {SUITE}")
        files = _base_files(systemd, {**mirror.carried_apt_options(), **FLAVOUR_APT_OPTIONS.get(flavour, {})})
        return cls(systemd, packages, source_lines, files, _base_links(systemd), flavour, arch)

    def digest(self) -> str:
        """A hash of the recipe and of the steps that apply it."""
        recipe = repr(self) + inspect.getsource(_customize)
        if self.flavour:
            recipe += self.flavour + inspect.getsource(_customize_flavour) + repr(APPTAINER_CONF_CHANGES)
        if self.arch:
            recipe += self.arch
        return hashlib.sha256(recipe.encode()).hexdigest()[:16]

    def path(self, cache_dir: Path = CACHE_DIR) -> Path:
        kind = (self.flavour or ("systemd" if self.systemd else "minbase")) + (f"-{self.arch}" if self.arch else "")
        return cache_dir / "rootfs" / f"{self.suite}-{kind}-{self.digest()}"


def _customize(root: Path, recipe: BaseRecipe) -> None:
    """Add the sudo user, unlock accounts for keys, drop host keys, write the recipe's files."""
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash",
         "--groups", "sudo", SUDO_USER], what="adding the lab's sudo user")
    for user in ("root", SUDO_USER):  # '*' rather than '!': sshd refuses keys of '!' accounts
        run(["chroot", str(root), "usermod", "--password", "*", user], what=f"unlocking {user}")
    for key in (root / "etc/ssh").glob("ssh_host_*"):  # each host gets its own
        key.unlink()
    for relative, text, mode in recipe.files:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
        (root / relative).chmod(mode)
    for relative, target in recipe.links:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(target)


def _customize_flavour(root: Path, recipe: BaseRecipe) -> None:
    """What a flavour's packages need changed to run in a lab host (see APPTAINER_CONF_CHANGES)."""
    if "apptainer" in FLAVOUR_PACKAGES.get(recipe.flavour, ()):
        conf = root / APPTAINER_CONF
        text = conf.read_text()
        for old, new in APPTAINER_CONF_CHANGES:
            if old not in text:
                raise LabError(f"{conf}: no line {old!r} to change; Apptainer's configuration changed")
            text = text.replace(old, new)
        conf.write_text(text)


def _prune_unused(cache_dir: Path, keep: Path) -> None:
    """Remove older builds of the same kind that no mounted host uses any more."""
    mounts = Path("/proc/self/mountinfo").read_text()
    kind = keep.name.rsplit("-", 1)[0]
    for old in keep.parent.glob(kind + "-*"):
        if old != keep and old.name.rsplit("-", 1)[0] == kind and str(old) not in mounts:
            shutil.rmtree(old, ignore_errors=True)


def ensure_base(systemd: bool = False, cache_dir: Path = CACHE_DIR, flavour: str = "", arch: str = "") -> Path:
    """The path of the base root filesystem for this recipe, built now if not cached."""
    recipe = BaseRecipe.for_this_machine(systemd, flavour, arch)
    target = recipe.path(cache_dir)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        building = target.with_name(target.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        try:
            apt_options = [f"--aptopt={name} \"{value}\"" for name, value in
                           FLAVOUR_APT_OPTIONS.get(recipe.flavour, {}).items()]
            if recipe.arch:  # its maintainer scripts run emulated; several times slower than native
                emulation.ensure_emulation(recipe.arch)
                apt_options.append(f"--arch={recipe.arch}")
            run(["mmdebstrap", "--variant=minbase", "--skip=cleanup/apt/lists", *apt_options,
                 "--include=" + ",".join(recipe.packages), recipe.suite, str(building),
                 *recipe.source_lines],
                what=f"building the lab's {target.name} base with mmdebstrap", timeout=1800)
            _customize(building, recipe)
            _customize_flavour(building, recipe)
        except (LabError, OSError, subprocess.SubprocessError):
            shutil.rmtree(building, ignore_errors=True)
            raise
        building.rename(target)
    _prune_unused(cache_dir, target)
    return target


def sudo_user_ids(base: Path) -> tuple[int, int]:
    """The uid and gid of the lab's sudo user in `base`."""
    for line in (base / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == SUDO_USER:
            return int(fields[2]), int(fields[3])
    raise LabError(f"base {base} has no user {SUDO_USER!r}")
