"""Places to point real apt at the stand-in repositories from this machine, for tests (root only).

``AptRoot``: a throwaway apt configuration and state (apt-get -o Dir=...), for update and
queries. ``ThrowawaySystem``: this machine's own system seen through an overlay in a private
mount namespace, to install stand-in packages for real (maintainer scripts included), with a
planted GPU and a boot id that ``reboot()`` changes. Nothing leaks to this machine: every write
lands in a tmpfs that disappears with the namespace.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .build import StandinRepo, StandinRepos
from .lab_hardware import write_boot_id

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class AptRoot:
    """apt with its own sources, keys, lists and an empty (or given) dpkg status under DIRECTORY."""

    def __init__(self, directory: Path, status_from: Path | None = None, arch: str = "amd64",
                 ca_cert: Path | None = None):
        self.dir = Path(directory)
        for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d",
                    "etc/apt/keyrings", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
                    "var/lib/dpkg"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        status = self.dir / "var/lib/dpkg/status"
        if status_from:
            shutil.copy(status_from, status)
        else:
            status.touch()
        self.config = self.dir / "etc/apt/apt.conf"
        self.config.write_text(
            f'Dir "{self.dir}/";\n'
            f'Dir::State::status "{status}";\n'
            f'APT::Architecture "{arch}";\n'
            f'APT::Architectures {{ "{arch}"; }};\n'
            'APT::Sandbox::User "root";\n'
            'Debug::NoLocking "true";\n'
            'Acquire::Retries "0";\n'
            + (f'Acquire::https::CaInfo "{ca_cert}";\n' if ca_cert else ""))
        self.sources = self.dir / "etc/apt/sources.list"
        self.sources.write_text("")

    def add_repo(self, repo: StandinRepo, base_url: str, key: Path | None = None,
                 suite: str | None = None) -> Path:
        """Add REPO's sources (SUITE's only, when given), signed-by its own served key (or KEY);
        return the keyring used."""
        keyring = self.dir / "etc/apt/keyrings" / f"{repo.name}.asc"
        shutil.copy(key or repo.key_file, keyring)
        with self.sources.open("a") as f:
            for source in repo.sources if suite is None else [repo.source(suite)]:
                f.write(source.one_line(base_url, str(keyring)))
        return keyring

    def apt(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run apt-get (or apt-cache when ARGS starts with "cache") with this root's config."""
        tool = ["apt-cache", *args[1:]] if args[:1] == ("cache",) else ["apt-get", *args]
        return subprocess.run(tool, env={"APT_CONFIG": str(self.config), "PATH": _PATH, "LANG": "C"},
                              capture_output=True, text=True, check=check, timeout=120)


class ThrowawaySystem:
    """This machine's root filesystem under an overlay whose upper layer is a tmpfs, in a private
    mount namespace held by one process; commands run chrooted into it through nsenter.

    /proc/sys/kernel/random/boot_id is a bound file (``reboot()`` writes a new id and gives
    /run a fresh tmpfs, as a boot does) and /sys/bus/pci/devices is ``pci_dir``, empty until a
    test plants a GPU there (lab_hardware.fake_pci_tree).
    """

    def __init__(self, work: Path, size: str = "1g", keep_distro_sources: bool = False):
        """Start the system in WORK. Unless KEEP_DISTRO_SOURCES, this machine's apt sources and
        lists are removed from it, so that apt sees only the repositories a test adds (as on a
        lab host whose only sources are the lab's), and every apt run stays small and fast."""
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.layer = self.work / "layer"
        self.root = self.layer / "root"
        self.pci_dir = self.work / "pci-devices"
        self.pci_dir.mkdir(exist_ok=True)
        self.boot_id_file = self.work / "boot_id"
        write_boot_id(self.boot_id_file)
        self.layer.mkdir(exist_ok=True)
        r = self.root
        forget_sources = "" if keep_distro_sources else (
            f"rm -rf {r}/etc/apt/sources.list {r}/etc/apt/sources.list.d/* {r}/var/lib/apt/lists/* "
            f"{r}/var/cache/apt/*.bin && mkdir -p {r}/var/lib/apt/lists/partial")
        script = f"""set -e
mount -t tmpfs -o size={size} throwaway {self.layer}
mkdir -p {self.layer}/upper {self.layer}/work {r}
mount -t overlay throwaway -o lowerdir=/,upperdir={self.layer}/upper,workdir={self.layer}/work {r}
mount --rbind /proc {r}/proc
mount --bind {self.boot_id_file} {r}/proc/sys/kernel/random/boot_id
mount --rbind /sys {r}/sys
mount --bind {self.pci_dir} {r}/sys/bus/pci/devices
mount --rbind /dev {r}/dev
mount -t tmpfs run {r}/run
mount -t tmpfs tmp {r}/tmp
rm -f {r}/var/lib/man-db/auto-update
{forget_sources}
echo ready
exec sleep infinity
"""
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            self.holder.kill()
            raise RuntimeError(f"throwaway system did not start: {self.holder.stderr.read()}")

    def path(self, inside: str) -> Path:
        """Where this process can read and write the system's INSIDE path (through the holder's
        mount namespace: /proc/PID/root)."""
        return Path(f"/proc/{self.holder.pid}/root") / self.root.relative_to("/") / inside.lstrip("/")

    def run(self, command: str, input: str | None = None, check: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """Run COMMAND with sh -c chrooted into the system, as root, stdout and stderr captured."""
        env = {"PATH": _PATH, "HOME": "/root", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(
            ["nsenter", "--mount", f"--target={self.holder.pid}", "chroot", str(self.root), "sh", "-c", command],
            input=input, capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def add_repos(self, repos: StandinRepos, base_url: str, *names: str, suite: str = "noble") -> None:
        """Add the named stand-in repos, SUITE's sources (a key file each, signed-by sources) and
        update their lists only (this machine's own lists, when kept, stay as they are)."""
        lines = []
        for repo in repos.all():
            if repo.name in names:
                keyring = f"/etc/apt/keyrings/lab-{repo.name}.asc"
                self.path(keyring).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(repo.key_file, self.path(keyring))
                lines.append(repo.source(suite).one_line(base_url, keyring))
        self.path("/etc/apt/sources.list.d/lab-standins.list").write_text("".join(lines))
        self.run("apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/lab-standins.list "
                 "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0", check=True)

    def reboot(self) -> str:
        """What a reboot changes for the stand-ins: a new boot id and an empty /run."""
        boot_id = write_boot_id(self.boot_id_file)
        subprocess.run(["nsenter", "--mount", f"--target={self.holder.pid}", "sh", "-c",
                        f"umount -l {self.root}/run && mount -t tmpfs run {self.root}/run"],
                       check=True, env={"PATH": _PATH})
        return boot_id

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()

    def __enter__(self) -> ThrowawaySystem:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
