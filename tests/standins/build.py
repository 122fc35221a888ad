"""Build the lab's signed stand-in vendor repositories (Docker CE, NVIDIA, Ubuntu, Apptainer).

Each repository lies under the server root at ``<vendor host>/<vendor path>``, the same tree
as the vendor's (``download.docker.com/linux/ubuntu/dists/...``), signed by a throwaway key of
its own, with packages of the vendors' names. The roles take repository and key URLs as
variables; the lab points them here (``lab_url``) and nothing else changes.

    repos = build_standin_repos(out_dir)      # ~6 s the first time, ~0.2 s when unchanged
    with serve(out_dir, bind="10.200.0.1", port=8089) as server: ...
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from . import recipes
from .archive import Signer, SigningKey, place_debs, write_packages_index
from .debs import (build_deb, download_debian_deb, download_docker_io, repackage_containerd_io,
                   repackage_docker_engine)
from .recipes import DebRecipe
from .serve import StandinServer, serve
from .tls import forget_server_certificate, write_certificates

__all__ = ["STANDIN_APT_PACKAGES", "AptSource", "StandinRepo", "StandinRepos", "StandinServer",
           "build_standin_repos", "ensure_packages", "lab_url", "serve"]

# Debian packages this machine needs to build the repositories (dpkg-deb, apt-ftparchive, gpg,
# zstd for the engine .deb) and to run the stand-ins in tests (squashfs-tools, siftool, jq and
# curl for apptainer and nvidia-ctk; busybox-static for the tests' tiny image).
STANDIN_APT_PACKAGES = ("dpkg", "apt-utils", "gpg", "gpg-agent", "zstd", "squashfs-tools",
                        "siftool", "jq", "curl", "busybox-static")
_MANIFEST = "standin-repos.json"
_RECIPE_HASH = "recipe.sha256"


def ensure_packages(packages: tuple[str, ...] = STANDIN_APT_PACKAGES) -> list[str]:
    """Install whichever of PACKAGES is missing with apt-get; return the names installed."""
    missing = []
    for name in packages:
        status = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", name],
                                capture_output=True, text=True).stdout
        if not status.endswith("installed"):
            missing.append(name)
    if missing:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, stdout=subprocess.DEVNULL,
                       env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return missing


def lab_url(vendor_url: str, base_url: str) -> str:
    """The lab's URL for a vendor URL: https://download.docker.com/x -> BASE/download.docker.com/x."""
    parts = urlsplit(vendor_url)
    rest = vendor_url.split(parts.netloc, 1)[1]
    return f"{base_url.rstrip('/')}/{parts.netloc}{rest}"


@dataclass(frozen=True)
class AptSource:
    """One apt source of a repository: a URI path under the server root, a suite ("/" when flat)."""

    uri_path: str
    suite: str
    components: tuple[str, ...] = ()

    def one_line(self, base_url: str, signed_by: str) -> str:
        words = [f"deb [signed-by={signed_by}] {base_url.rstrip('/')}/{self.uri_path}", self.suite,
                 *self.components]
        return " ".join(words) + "\n"


@dataclass(frozen=True)
class StandinRepo:
    """A stand-in repository: where it lies, its key, and what it holds."""

    name: str
    vendor_url: str  # the vendor's base URL, as the roles default it
    path: str  # the same tree under the server root
    key_path: str  # the key to fetch, under the server root (armored, like the vendor's)
    key_file: Path  # that key on this machine
    key_fingerprint: str
    sources: tuple[AptSource, ...]
    packages: dict[str, tuple[str, ...]]  # package name -> versions

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.path}"

    def source(self, suite: str) -> AptSource:
        """The source of this repository for one suite ("/" for a flat repository)."""
        for source in self.sources:
            if source.suite in (suite, "/"):
                return source
        raise KeyError(f"{self.name} serves no suite {suite!r} (it serves "
                       f"{', '.join(s.suite for s in self.sources)})")

    def key_url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.key_path}"


@dataclass(frozen=True)
class StandinRepos:
    """All stand-in repositories under one server root, built for one base URL."""

    root: Path
    base_url: str
    arch: str
    ca_cert: Path | None  # the lab CA to trust when base_url is https, else None
    docker: StandinRepo
    docker_debian: StandinRepo
    nvidia_container_toolkit: StandinRepo
    ubuntu_archive: StandinRepo
    cuda: StandinRepo
    apptainer: StandinRepo
    apptainer_release_deb: str  # path under the root of the release .deb (github.com/...)

    def all(self) -> tuple[StandinRepo, ...]:
        return (self.docker, self.docker_debian, self.nvidia_container_toolkit, self.ubuntu_archive,
                self.cuda, self.apptainer)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=2)

    @classmethod
    def from_json(cls, text: str) -> StandinRepos:
        data = json.loads(text)
        repos = {}
        for name in ("docker", "docker_debian", "nvidia_container_toolkit", "ubuntu_archive", "cuda", "apptainer"):
            r = data.pop(name)
            r["key_file"] = Path(r["key_file"])
            r["sources"] = tuple(AptSource(s["uri_path"], s["suite"], tuple(s["components"]))
                                 for s in r["sources"])
            r["packages"] = {k: tuple(v) for k, v in r["packages"].items()}
            repos[name] = StandinRepo(**r)
        ca_cert = data.pop("ca_cert")
        return cls(root=Path(data.pop("root")), ca_cert=ca_cert and Path(ca_cert), **data, **repos)


def _versions(recipe_list: list[DebRecipe]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for r in recipe_list:
        found.setdefault(r.name, []).append(r.version)
    return {name: tuple(versions) for name, versions in sorted(found.items())}


# ---------------------------------------------------------------- the five repositories

class _Build:
    """One build of every repository into WWW (the server root)."""

    def __init__(self, out_dir: Path, arch: str, base_url: str):
        self.out_dir, self.arch = out_dir, arch
        self.www, self.final = out_dir / "www.new", out_dir / "www"
        shutil.rmtree(self.www, ignore_errors=True)
        self.base_url = base_url.rstrip("/")
        self.work = out_dir / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.debs = self.work / "debs"
        self.debs.mkdir(parents=True)
        self.signer = Signer(out_dir / "keys")
        self.pool = ThreadPoolExecutor(max_workers=4)

    def build_debs(self, recipe_list: list[DebRecipe], subdir: str) -> list[Path]:
        out = self.debs / subdir
        out.mkdir(parents=True, exist_ok=True)
        return list(self.pool.map(lambda r: build_deb(r, self.work / "stage", out), recipe_list))

    def dists_repo(self, root: Path, key: SigningKey, label: str, suite: str,
                   components: dict[str, list[Path]], pool_dir: Callable[[str, str], str]) -> None:
        """Lay out dists/<suite>/<component>/binary-<arch> like Docker's repository or a PPA."""
        for component, debs in components.items():
            dirs = []
            for deb in debs:
                rel = pool_dir(component, deb.name.split("_")[0])
                place_debs([deb], root / rel)
                dirs.append(rel)
            # The index lists only this suite's packages (pools may be shared between suites).
            index_dir = root / "dists" / suite / component / f"binary-{self.arch}"
            write_packages_index(root, sorted(set(dirs)), index_dir, [d.name for d in debs])
        self.signer.sign_release(root / "dists" / suite, key, {
            "Origin": label, "Label": label, "Suite": suite, "Codename": suite,
            "Components": " ".join(components), "Architectures": self.arch})

    def flat_repo(self, directory: Path, key: SigningKey, label: str, debs: list[Path]) -> None:
        """A flat repository (`deb URL /`) like NVIDIA's: Packages and a signed Release in one folder."""
        place_debs(debs, directory)
        write_packages_index(directory, ".", directory)
        self.signer.sign_release(directory, key, {"Origin": label, "Label": label,
                                                  "Architectures": f"{self.arch} all"})

    def repo(self, name: str, vendor_url: str, key: SigningKey, key_path: str,
             sources: tuple[AptSource, ...], packages: dict[str, tuple[str, ...]]) -> StandinRepo:
        """Publish KEY at KEY_PATH and describe the repository as it will be served."""
        path = self.www / key_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.armored)
        return StandinRepo(name, vendor_url, _path_of(vendor_url), key_path, self.final / key_path,
                           key.fingerprint, sources, packages)

    def close(self) -> None:
        self.pool.shutdown()
        self.signer.close()
        shutil.rmtree(self.work, ignore_errors=True)


def _path_of(vendor_url: str) -> str:
    parts = urlsplit(vendor_url)
    return f"{parts.netloc}{parts.path}".rstrip("/")


def _per_package_pool(component: str, package: str) -> str:
    return f"pool/{component}/{package[0]}/{package}"


def _docker(b: _Build, vendor: str, label: str, suites: dict[str, str], engines: dict[str, Future],
            containerd: Future) -> StandinRepo:
    """Docker's repository for one distribution (linux/ubuntu or linux/debian), one suite per codename."""
    path = _path_of(vendor)
    key = b.signer.key("docker", "Docker")  # Docker signs both with one key (the same gpg file)
    packages: dict[str, list[str]] = {}
    sources = []
    for codename in suites:
        plugins = recipes.docker_plugin_recipes(codename, b.arch)
        debs = b.build_debs(plugins, f"docker-{codename}") + engines[codename].result()
        debs.append(containerd.result())
        b.dists_repo(b.www / path, key, "Docker", codename, {"stable": debs},
                     lambda component, package, c=codename: f"dists/{c}/pool/{component}/{b.arch}")
        engine_version = _engine_version(codename)
        for name, versions in {**_versions(plugins), "docker-ce": (engine_version,),
                               "docker-ce-cli": (engine_version,),
                               "containerd.io": (_containerd_version(),)}.items():
            packages.setdefault(name, []).extend(versions)
        sources.append(AptSource(path, codename, ("stable",)))
    return b.repo(label, vendor, key, f"{path}/gpg", tuple(sources),
                  {k: tuple(v) for k, v in sorted(packages.items())})


def _containerd_version() -> str:
    return f"{recipes.CONTAINERD_VERSION}-1"


def _engine_version(codename: str) -> str:
    return recipes.docker_version(recipes.DOCKER_ENGINE_VERSION, codename, epoch="5:")


def _toolkit(b: _Build) -> StandinRepo:
    vendor = "https://nvidia.github.io/libnvidia-container"
    path = _path_of(vendor)
    key = b.signer.key("nvidia-container-toolkit", "NVIDIA Container Toolkit")
    toolkit = recipes.toolkit_recipes(b.arch)
    repo_path = f"{path}/stable/deb/{b.arch}"
    b.flat_repo(b.www / repo_path, key, "NVIDIA", b.build_debs(toolkit, "toolkit"))
    # Served as NVIDIA serves it (apt expands $(ARCH)), but naming the lab's URL.
    (b.www / path / "stable/deb/nvidia-container-toolkit.list").write_text(
        f"deb {b.base_url}/{path}/stable/deb/$(ARCH) /\n"
        f"#deb {b.base_url}/{path}/experimental/deb/$(ARCH) /\n")
    return b.repo("nvidia-container-toolkit", vendor, key, f"{path}/gpgkey",
                  (AptSource(repo_path, "/"),), _versions(toolkit))


def _ubuntu_archive(b: _Build) -> StandinRepo:
    vendor = "http://archive.ubuntu.com/ubuntu"
    path = _path_of(vendor)
    key = b.signer.key("ubuntu-archive", "Ubuntu Archive")
    sources, every = [], []
    for codename in recipes.UBUNTU_SUITES:
        components = recipes.ubuntu_archive_recipes(codename, b.arch)
        debs = {c: b.build_debs(rs, f"ubuntu-{codename}-{c}") for c, rs in components.items()}
        b.dists_repo(b.www / path, key, "Ubuntu", codename, debs, _per_package_pool)
        sources.append(AptSource(path, codename, tuple(components)))
        every += [r for rs in components.values() for r in rs]
    return b.repo("ubuntu-archive", vendor, key, f"{path}/ubuntu-archive-keyring.asc",
                  tuple(sources), _versions(every))


def _cuda(b: _Build) -> StandinRepo:
    vendor = "https://developer.download.nvidia.com/compute/cuda/repos"
    path = _path_of(vendor)
    key = b.signer.key("cuda", "CUDA")
    drivers = recipes.cuda_repo_recipes(b.arch)
    driver_debs = b.build_debs(drivers, "cuda")
    cuda_arch = {"amd64": "x86_64", "arm64": "sbsa"}.get(b.arch, b.arch)
    sources, keyrings = [], []
    for distro in recipes.CUDA_DISTROS:
        rel = f"{path}/{distro}/{cuda_arch}"
        keyring = recipes.cuda_keyring_recipe(distro, cuda_arch, f"{b.base_url}/{rel}", key.binary)
        keyrings.append(keyring)
        b.flat_repo(b.www / rel, key, "NVIDIA", driver_debs + b.build_debs([keyring], f"cuda-{distro}"))
        # NVIDIA serves the key in each folder, named by its short id (3bf863cc.pub for theirs).
        (b.www / rel / f"{key.fingerprint[-8:].lower()}.pub").write_bytes(key.armored)
        sources.append(AptSource(rel, "/"))
    first = sources[0].uri_path
    return b.repo("cuda", vendor, key, f"{first}/{key.fingerprint[-8:].lower()}.pub", tuple(sources),
                  _versions(drivers + keyrings[:1]))


def _apptainer(b: _Build) -> StandinRepo:
    vendor = "https://ppa.launchpadcontent.net/apptainer/ppa/ubuntu"
    path = _path_of(vendor)
    key = b.signer.key("apptainer-ppa", "Apptainer PPA")
    sources, every = [], []
    for codename in recipes.UBUNTU_SUITES:
        apptainer = [recipes.apptainer_recipe(codename, b.arch)]
        b.dists_repo(b.www / path, key, "LP-PPA-apptainer", codename,
                     {"main": b.build_debs(apptainer, f"apptainer-{codename}")}, _per_package_pool)
        sources.append(AptSource(path, codename, ("main",)))
        every += apptainer
    # Launchpad keys come from the keyserver; any query on this path returns the PPA's key.
    return b.repo("apptainer", vendor, key, "keyserver.ubuntu.com/pks/lookup", tuple(sources),
                  _versions(every))


APPTAINER_RELEASE_URL = ("https://github.com/apptainer/apptainer/releases/download/"
                         f"v{recipes.APPTAINER_VERSION}/apptainer_{recipes.APPTAINER_VERSION}_amd64.deb")


def _apptainer_release(b: _Build) -> str:
    """The release .deb where GitHub serves it; returns its path under the server root."""
    rel = _path_of(APPTAINER_RELEASE_URL)
    deb = b.build_debs([recipes.apptainer_release_recipe(b.arch)], "apptainer-release")[0]
    (b.www / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(deb, b.www / rel)
    return rel


def _recipe_digest(*params: str) -> str:
    """What the build depends on: this package's sources and payloads, and the parameters."""
    digest = hashlib.sha256("\0".join(params).encode())
    here = Path(__file__).parent
    for path in sorted([*here.glob("*.py"), *(here / "payload").iterdir()]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


DEFAULT_BASE_URL = "http://10.200.0.1:8089"


def build_standin_repos(out_dir: Path, arch: str = "amd64",
                        base_url: str = DEFAULT_BASE_URL) -> StandinRepos:
    """Build (or reuse) every stand-in repository under OUT_DIR/www, for clients at BASE_URL.

    Each repository serves the suites its vendor serves (recipes.UBUNTU_SUITES, DEBIAN_SUITES).
    BASE_URL is baked into what names the lab's own URL (cuda-keyring's sources file, the
    toolkit's .list); the rest is the same whatever the address. An https BASE_URL also makes
    a lab CA and a certificate for its host (tls.py), and serve() then speaks TLS. The result is cached in
    OUT_DIR and rebuilt only when this package's code, payloads or the parameters change;
    signing keys are kept across rebuilds. Debian's docker.io, containerd and runc .debs are downloaded once.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        docker_io = download_docker_io(out_dir / "downloads", arch)
        runtime_debs = [download_debian_deb(out_dir / "downloads", name, arch) for name in ("containerd", "runc")]
        digest = _recipe_digest(arch, base_url.rstrip("/"), docker_io.name, *(d.name for d in runtime_debs))
        manifest, stamp, final = out_dir / _MANIFEST, out_dir / _RECIPE_HASH, out_dir / "www"
        if stamp.exists() and stamp.read_text() == digest and manifest.exists() and final.is_dir():
            return StandinRepos.from_json(manifest.read_text())
        stamp.unlink(missing_ok=True)
        scheme, host = urlsplit(base_url).scheme, urlsplit(base_url).hostname
        if scheme == "https":
            ca_cert = write_certificates(out_dir / "tls", host)
        else:
            ca_cert = None
            forget_server_certificate(out_dir / "tls")
        b = _Build(out_dir, arch, base_url)
        try:
            suites = {**recipes.UBUNTU_SUITES, **recipes.DEBIAN_SUITES}
            engines = {codename: b.pool.submit(repackage_docker_engine, docker_io, _engine_version(codename),
                                               b.work, b.debs)
                       for codename in suites}
            containerd = b.pool.submit(repackage_containerd_io, runtime_debs, _containerd_version(),
                                       b.work, b.debs)
            repos = StandinRepos(
                root=final, base_url=b.base_url, arch=arch, ca_cert=ca_cert,
                nvidia_container_toolkit=_toolkit(b), ubuntu_archive=_ubuntu_archive(b),
                cuda=_cuda(b), apptainer=_apptainer(b), apptainer_release_deb=_apptainer_release(b),
                docker=_docker(b, "https://download.docker.com/linux/ubuntu", "docker",
                               recipes.UBUNTU_SUITES, engines, containerd),
                docker_debian=_docker(b, "https://download.docker.com/linux/debian", "docker-debian",
                                      recipes.DEBIAN_SUITES, engines, containerd))
        finally:
            b.close()
        shutil.rmtree(final, ignore_errors=True)
        b.www.rename(final)
        manifest.write_text(repos.to_json())
        stamp.write_text(digest)
        return repos
