"""The lab's stand-in vendor repositories, checked with real apt, dpkg and siftool (root only)."""
from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.standins import (STANDIN_APT_PACKAGES, build_standin_repos, ensure_packages,
                            fake_pci_tree, lab_url, plant_gpu, serve, write_boot_id)
from tests.standins.sandboxes import AptRoot, ThrowawaySystem

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="builds repos with apt-get installs, "
                               "mount namespaces and chroot: run as root")
V100 = [("0000:00:00.0", "8086:1237", "0x060000"), ("0000:00:1e.0", "10de:1db1", "0x030200")]
SMI_QUERY = ("nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total,"
             "compute_cap,persistence_mode --format=csv,noheader,nounits")
PREFERRED_PORT = 18089


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def served(request, tmp_path_factory):
    """(repos, server): the stand-in repos, built (or cached) for and served at 127.0.0.1.

    The server takes PREFERRED_PORT when free, so that the cached build (its URL is baked into
    cuda-keyring) is reused; a concurrent session gets another port and a build of its own.
    """
    if os.geteuid() != 0:
        pytest.skip("builds repos with apt-get installs, mount namespaces and chroot: run as root")
    ensure_packages()
    cache = getattr(request.config, "cache", None)
    out = Path(cache.mkdir(f"standin-repos-{PREFERRED_PORT}")) if cache else tmp_path_factory.mktemp("standins")
    try:
        server = serve(out, bind="127.0.0.1", port=PREFERRED_PORT)
    except OSError:
        out = tmp_path_factory.mktemp("standins")
        server = serve(out, bind="127.0.0.1", port=0)
    with server:
        yield build_standin_repos(out, base_url=server.url), server


@pytest.fixture
def repos(served):
    return served[0]


@pytest.fixture
def apt_root(tmp_path):
    return AptRoot(tmp_path / "aptroot")


@pytest.fixture
def system(tmp_path, served):
    with ThrowawaySystem(tmp_path / "system") as s:
        yield s


@pytest.fixture(scope="session")
def payload_bin(served, tmp_path_factory):
    """The small stand-in .debs unpacked, each in a folder named after it."""
    root = tmp_path_factory.mktemp("unpacked")
    for deb in served[0].root.rglob("*.deb"):
        if not deb.name.startswith(("docker-ce", "cuda-keyring", "containerd.io")) and not (root / deb.name).exists():
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root / deb.name)], check=True)
    return root


def _tool(payload_bin: Path, name: str, version_prefix: str = "") -> Path:
    found = sorted(payload_bin.glob(f"*{version_prefix}*/usr/bin/{name}"))
    assert found, f"no stand-in ships /usr/bin/{name}"
    return found[-1]


# ---------------------------------------------------------------- the repositories through apt

@root_only
def test_apt_lists_every_stand_in_package_with_both_toolkit_versions(repos, apt_root):
    for repo in repos.all():
        apt_root.add_repo(repo, repos.base_url)
    update = apt_root.apt("update")
    assert update.returncode == 0, update.stderr
    assert "NO_PUBKEY" not in update.stderr
    madison = apt_root.apt("cache", "madison", "nvidia-container-toolkit").stdout
    assert "1.17.8-1" in madison and "1.18.0-1" in madison
    for repo in repos.all():
        for package, versions in repo.packages.items():
            listed = apt_root.apt("cache", "madison", package).stdout
            for version in versions:
                assert version in listed, f"{package} {version} not listed by apt: {listed}"


@root_only
def test_a_repository_signed_by_another_key_gives_no_pubkey(repos, apt_root):
    apt_root.add_repo(repos.docker, repos.base_url, key=repos.nvidia_container_toolkit.key_file)
    update = apt_root.apt("update")
    assert update.returncode == 100
    assert "NO_PUBKEY" in update.stderr


@root_only
def test_each_vendor_repository_has_a_key_of_its_own(repos):
    fingerprints = {repo.key_fingerprint for repo in repos.all()}
    assert len(fingerprints) == len(repos.all()) - 1  # Docker signs linux/ubuntu and linux/debian alike
    assert repos.docker.key_fingerprint == repos.docker_debian.key_fingerprint


@root_only
def test_each_repository_serves_only_the_suites_its_vendor_serves(repos):
    suites = {repo.name: sorted(s.suite for s in repo.sources) for repo in repos.all()}
    assert suites["docker"] == suites["ubuntu-archive"] == suites["apptainer"] == ["jammy", "noble"]
    assert suites["docker-debian"] == ["bookworm"]
    for missing in ("download.docker.com/linux/ubuntu/dists/bookworm", "download.docker.com/linux/debian/dists/noble",
                    "ppa.launchpadcontent.net/apptainer/ppa/ubuntu/dists/bookworm",
                    "archive.ubuntu.com/ubuntu/dists/bookworm"):
        assert not (repos.root / missing).exists(), missing


@root_only
def test_the_toolkit_list_is_served_as_nvidia_serves_it_but_names_the_lab(repos, apt_root):
    toolkit = repos.nvidia_container_toolkit
    listing = urllib.request.urlopen(lab_url(
        "https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list",
        repos.base_url)).read().decode()
    assert listing.splitlines()[0] == f"deb {toolkit.url(repos.base_url)}/stable/deb/$(ARCH) /"
    keyring = apt_root.dir / "nvidia.asc"
    keyring.write_bytes(urllib.request.urlopen(toolkit.key_url(repos.base_url)).read())
    # The documented sed adds signed-by to each line; apt expands $(ARCH).
    apt_root.sources.write_text(listing.replace("deb ", f"deb [signed-by={keyring}] "))
    update = apt_root.apt("update")
    assert update.returncode == 0, update.stderr
    assert "1.18.0-1" in apt_root.apt("cache", "madison", "libnvidia-container1").stdout


@root_only
def test_over_https_the_documented_toolkit_steps_work_unchanged(request, tmp_path_factory, tmp_path, served):
    cache = getattr(request.config, "cache", None)
    out = Path(cache.mkdir(f"standin-repos-{PREFERRED_PORT + 1}")) if cache else tmp_path_factory.mktemp("tls")
    try:
        server = serve(out, bind="127.0.0.1", port=PREFERRED_PORT + 1)
    except OSError:
        out = tmp_path_factory.mktemp("tls")
        server = serve(out, bind="127.0.0.1", port=0)
    with server:
        repos = build_standin_repos(out, base_url=server.https_url)
        toolkit = repos.nvidia_container_toolkit
        keyring = tmp_path / "nvidia-container-toolkit-keyring.gpg"
        env = {"PATH": "/usr/bin:/bin", "GNUPGHOME": str(tmp_path), "CA": str(repos.ca_cert),
               "KEY_URL": toolkit.key_url(repos.base_url), "KEYRING": str(keyring),
               "LIST_URL": f"{toolkit.url(repos.base_url)}/stable/deb/nvidia-container-toolkit.list"}
        documented = ('curl --cacert "$CA" -fsSL "$KEY_URL" | gpg --batch --yes --dearmor -o "$KEYRING" && '
                      'curl --cacert "$CA" -s -L "$LIST_URL" | '
                      'sed "s#deb https://#deb [signed-by=$KEYRING] https://#g"')
        listing = subprocess.run(["sh", "-c", documented], env=env, capture_output=True, text=True, check=True).stdout
        assert listing.startswith(f"deb [signed-by={keyring}] https://127.0.0.1:")
        apt_root = AptRoot(tmp_path / "aptroot", ca_cert=repos.ca_cert)
        apt_root.sources.write_text(listing)
        update = apt_root.apt("update")
        assert update.returncode == 0, update.stderr
        assert "1.17.8-1" in apt_root.apt("cache", "madison", "nvidia-container-toolkit").stdout


@root_only
def test_an_unchanged_recipe_reuses_the_build(served, request):
    repos, server = served
    def files():
        return {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in repos.root.rglob("*") if p.is_file()}
    before = files()
    again = build_standin_repos(repos.root.parent, base_url=repos.base_url)
    assert again == repos
    assert files() == before, "nothing was rebuilt or rewritten"


def test_the_apt_packages_needed_are_named():
    assert {"apt-utils", "gpg", "siftool", "squashfs-tools", "jq"} <= set(STANDIN_APT_PACKAGES)


# ---------------------------------------------------------------- NVIDIA Container Toolkit

@root_only
def test_toolkit_packages_must_be_pinned_together(served, system):
    repos, server = served
    system.add_repos(repos, server.url, "nvidia-container-toolkit")
    alone = system.run("apt-get install -y nvidia-container-toolkit=1.17.8-1")
    assert alone.returncode == 100 and "nvidia-container-toolkit-base (= 1.17.8-1)" in alone.stdout
    mixed = system.run("apt-get install -y nvidia-container-toolkit=1.18.0-1 nvidia-container-toolkit-base=1.17.8-1")
    assert mixed.returncode == 100 and "nvidia-container-toolkit-base (= 1.18.0-1)" in mixed.stdout
    four = " ".join(f"{p}=1.17.8-1" for p in repos.nvidia_container_toolkit.packages)
    system.run(f"apt-get install -y {four}", check=True)
    installed = system.run("dpkg-query -W -f '${Package} ${Version}\\n' 'nvidia-container-toolkit*' 'libnvidia-container*'").stdout
    assert sorted(installed.split("\n")[:-1]) == sorted(f"{p} 1.17.8-1" for p in repos.nvidia_container_toolkit.packages)
    assert "version 1.17.8" in system.run("nvidia-ctk --version").stdout


@root_only
def test_nvidia_ctk_merges_the_nvidia_runtime_and_keeps_every_other_key(payload_bin, tmp_path):
    ctk = _tool(payload_bin, "nvidia-ctk", "1.18.0")
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": "/srv/docker", "insecure-registries": ["10.200.0.1:5000"],
                                  "runtimes": {"other": {"path": "other-runtime"}}}))
    run = subprocess.run([ctk, "runtime", "configure", "--runtime=docker", f"--config={config}"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Wrote updated config" in run.stderr
    assert json.loads(config.read_text()) == {
        "data-root": "/srv/docker", "insecure-registries": ["10.200.0.1:5000"],
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"},
                     "other": {"path": "other-runtime"}}}
    missing = tmp_path / "new" / "daemon.json"
    subprocess.run([ctk, "runtime", "configure", "--runtime=docker", f"--config={missing}"], check=True,
                   capture_output=True)
    assert json.loads(missing.read_text()) == {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
    config.write_text("{not json")
    broken = subprocess.run([ctk, "runtime", "configure", "--runtime=docker", f"--config={config}"],
                            capture_output=True, text=True)
    assert broken.returncode == 1 and "unable to load config" in broken.stderr
    assert config.read_text() == "{not json"


@root_only
def test_nvidia_ctk_writes_as_the_go_tool_does(payload_bin, tmp_path):
    """pkg/config/engine/docker and pkg/config/raw.go: no trailing newline, an empty file is an
    error, --cdi.enabled replaces the features map, --runtime takes a separate value and defaults to docker."""
    ctk = _tool(payload_bin, "nvidia-ctk", "1.18.0")
    config = tmp_path / "daemon.json"
    config.write_text("")
    empty = subprocess.run([ctk, "runtime", "configure", f"--config={config}"], capture_output=True, text=True)
    assert empty.returncode == 1 and "unable to load config: EOF" in empty.stderr
    config.write_text(json.dumps({"features": {"buildkit": True}}))
    subprocess.run([ctk, "runtime", "configure", "--runtime", "docker", f"--config={config}", "--cdi.enabled"],
                   check=True, capture_output=True)
    written = config.read_text()
    assert not written.endswith("\n") and written.startswith('{\n    "features"')
    assert json.loads(written)["features"] == {"cdi": True}
    unknown = subprocess.run([ctk, "runtime", "configure", "--runtime=podman", f"--config={config}"],
                             capture_output=True, text=True)
    assert unknown.returncode == 1 and "not modelled" in unknown.stderr


@root_only
def test_cdi_generation_needs_a_loaded_driver(payload_bin, tmp_path):
    ctk = _tool(payload_bin, "nvidia-ctk")
    run = subprocess.run([ctk, "cdi", "generate", f"--output={tmp_path / 'nvidia.yaml'}"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "failed to initialize NVML" in run.stderr
    assert not (tmp_path / "nvidia.yaml").exists()


# ---------------------------------------------------------------- NVIDIA driver, both routes

def _ubuntu_kernel(system, flavour: str) -> None:
    """The sandbox's newest installed kernel, as ubuntu-drivers finds it (linux-image-* packages)."""
    system.run(f"apt-get install -y linux-image-{flavour}", check=True)


@root_only
def test_route_a_gpgpu_installs_headless_no_dkms_and_prebuilt_modules_and_works_after_a_reboot(served, system):
    repos, server = served
    fake_pci_tree(system.pci_dir, V100)
    system.add_repos(repos, server.url, "ubuntu-archive")
    system.run("apt-get install -y ubuntu-drivers-common", check=True)
    _ubuntu_kernel(system, "generic")
    assert system.run("ubuntu-drivers list --gpgpu").stdout.startswith(
        "nvidia-driver-580-server, (kernel modules provided by linux-modules-nvidia-580-server-generic)")
    install = system.run("ubuntu-drivers install --gpgpu nvidia:580-server")
    assert install.returncode == 0, install.stdout + install.stderr
    listing = system.run("dpkg-query -W -f '${db:Status-Abbrev}|${Package}\\n'").stdout.splitlines()
    installed = {line.split("|")[1] for line in listing if line.startswith("ii")}
    assert {"nvidia-headless-no-dkms-580-server", "linux-modules-nvidia-580-server-generic",
            "linux-modules-nvidia-580-server-6.8.0-87-generic"} <= installed
    for absent in ("nvidia-driver-580-server", "nvidia-dkms-580-server", "dkms", "nvidia-utils-580-server",
                   "xserver-xorg-video-nvidia-580-server"):
        assert absent not in installed, absent
    assert system.run("test -e /usr/bin/nvidia-smi").returncode == 1  # --gpgpu pulls no nvidia-utils
    system.run("apt-get install -y nvidia-utils-580-server", check=True)
    assert system.run("test -e /var/run/reboot-required").returncode == 1  # no driver package writes it
    before = system.run("nvidia-smi")
    assert before.returncode == 9
    assert before.stdout.startswith("NVIDIA-SMI has failed because it couldn't communicate with the "
                                    "NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.")
    system.reboot()
    table = system.run("nvidia-smi", check=True).stdout
    assert "Tesla V100-SXM2-16GB" in table and "Driver Version: 580.95.05" in table
    assert all(len(line) == 91 for line in table.splitlines()[1:] if line.startswith(("|", "+")))
    assert system.run(SMI_QUERY, check=True).stdout == \
        "0, Tesla V100-SXM2-16GB, 00000000:00:1E.0, 580.95.05, 16384, 7.0, Disabled\n"
    system.run("nvidia-smi -pm 1", check=True)
    assert system.run(SMI_QUERY).stdout.endswith("Enabled\n")
    system.reboot()
    assert system.run(SMI_QUERY).stdout.endswith("Disabled\n")  # -pm does not outlive a boot


@root_only
def test_route_a_without_prebuilt_modules_for_the_kernel_installs_nothing_and_exits_0(served, system):
    repos, server = served
    fake_pci_tree(system.pci_dir, V100)
    system.add_repos(repos, server.url, "ubuntu-archive")
    system.run("apt-get install -y ubuntu-drivers-common", check=True)
    _ubuntu_kernel(system, "lowlatency")
    run = system.run("ubuntu-drivers install --gpgpu nvidia:580-server")
    assert (run.returncode, run.stdout) == (0, "No drivers found for installation.\n")
    assert system.run("dpkg-query -W nvidia-headless-no-dkms-580-server").returncode == 1


@root_only
def test_ubuntu_drivers_takes_flavours_exactly_and_refuses_unknown_options(served, system):
    repos, server = served
    fake_pci_tree(system.pci_dir, V100)
    system.add_repos(repos, server.url, "ubuntu-archive")
    system.run("apt-get install -y ubuntu-drivers-common", check=True)
    _ubuntu_kernel(system, "generic")
    branch_only = system.run("ubuntu-drivers install --gpgpu nvidia:580")  # no "580" -> "580-server" mapping
    assert (branch_only.returncode, branch_only.stdout) == (0, "No drivers found for installation.\n")
    unknown = system.run("ubuntu-drivers install --gpgpu --assume-yes nvidia:580-server")
    assert unknown.returncode == 2 and "Error: No such option: --assume-yes" in unknown.stderr


@root_only
def test_ubuntu_drivers_installs_nothing_without_an_nvidia_gpu(served, system):
    repos, server = served
    system.add_repos(repos, server.url, "ubuntu-archive")
    system.run("apt-get install -y ubuntu-drivers-common", check=True)
    run = system.run("ubuntu-drivers install --gpgpu nvidia:580-server")
    assert (run.returncode, run.stdout) == (0, "No drivers found for installation.\n")


@root_only
def test_route_b_pinning_keeps_branch_580_and_an_upgrade_needs_a_reboot(served, system):
    repos, server = served
    fake_pci_tree(system.pci_dir, V100)
    folder = f"{repos.cuda.url(server.url)}/debian12/x86_64"
    system.run(f"cd /tmp && curl -fsSLO {folder}/cuda-keyring_1.1-1_all.deb && dpkg -i cuda-keyring_1.1-1_all.deb "
               "&& apt-get update", check=True)
    assert "Candidate: 590.44.01-1" in system.run("apt-cache policy cuda-drivers").stdout
    system.run("apt-get install -y nvidia-driver-pinning-580 && apt-get install -y nvidia-open", check=True)
    assert system.run("dpkg-query -W -f '${Version}' nvidia-open").stdout == "580.95.05-1"
    system.reboot()
    volta_open = system.run("nvidia-smi")
    assert (volta_open.returncode, volta_open.stdout) == (6, "No devices were found\n")  # no open modules before Turing
    system.run("apt-get install -y cuda-drivers", check=True)  # proprietary modules replace the open ones
    system.reboot()
    assert "580.95.05" in system.run(SMI_QUERY, check=True).stdout
    system.run("apt-get purge -y nvidia-driver-pinning-580 && apt-get install -y cuda-drivers", check=True)
    mismatch = system.run("nvidia-smi")
    assert (mismatch.returncode, mismatch.stdout) == (
        18, "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 590.44\n")
    system.reboot()
    assert system.run("nvidia-smi").stdout == "No devices were found\n"  # 590 dropped Volta


def test_plant_gpu_writes_the_kernels_formats(tmp_path):
    tree = plant_gpu(tmp_path / "rootfs")
    assert tree == tmp_path / "rootfs/var/lib/lab-standin/pci-devices"
    gpu = tree / "0000:00:1e.0"
    assert [(gpu / f).read_text() for f in ("vendor", "device", "class")] == ["0x10de\n", "0x1db1\n", "0x030200\n"]
    assert (tree / "0000:00:00.0/vendor").read_text() == "0x8086\n"
    assert (gpu / "modalias").read_text() == "pci:v000010DEd00001DB1sv000010DEsd00000000bc03sc02i00\n"
    first, second = write_boot_id(tmp_path / "boot_id"), write_boot_id(tmp_path / "boot_id")
    assert first != second and (tmp_path / "boot_id").read_text() == second + "\n"


# ---------------------------------------------------------------- Docker CE

@root_only
def test_docker_ce_installs_debians_engine_under_docker_ce_names(served, tmp_path):
    repos, server = served
    with ThrowawaySystem(tmp_path / "system", keep_distro_sources=True) as system:
        system.add_repos(repos, server.url, "docker-debian", suite="bookworm")
        run = system.run("apt-get install -s docker-ce docker-ce-cli containerd.io docker-buildx-plugin "
                         "docker-compose-plugin")
    assert run.returncode == 0, run.stdout + run.stderr
    for package in ("docker-ce ", "docker-ce-cli ", "containerd.io "):
        assert f"Inst {package}" in run.stdout
    # containerd.io Provides, Conflicts and Replaces containerd and runc (containerd-packaging debian/control).
    for package in ("docker.io ", "containerd ", "runc "):
        assert f"Inst {package}" not in run.stdout
    fields = subprocess.run(["dpkg-deb", "-f", str(next(repos.root.rglob("containerd.io_*.deb")))],
                            capture_output=True, text=True).stdout
    assert {"Provides: containerd, runc", "Conflicts: containerd, runc", "Replaces: containerd, runc"} <= set(fields.splitlines())
    files = subprocess.run(["dpkg-deb", "-c", str(next(repos.root.rglob("containerd.io_*.deb")))],
                           capture_output=True, text=True).stdout
    assert "./usr/bin/containerd\n" in files and "./usr/sbin/runc\n" in files
    engine = next(repos.root.rglob("docker-ce_*.deb"))
    files = subprocess.run(["dpkg-deb", "-c", str(engine)], capture_output=True, text=True).stdout
    assert "./usr/sbin/dockerd" in files and "./usr/bin/docker\n" not in files


# ---------------------------------------------------------------- Apptainer

def _tar(members: dict[str, bytes | str | None]) -> bytes:
    """A layer: path -> bytes (file), str (symlink target) or None (directory)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, content in members.items():
            info = tarfile.TarInfo(path)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def docker_archive(path: Path, extra_bytes: int = 0) -> Path:
    """A two-layer docker-archive of a busybox image; layer 2 whites out /etc/gone."""
    busybox = Path("/bin/busybox").read_bytes()
    layer1 = {"bin": None, "etc": None, "bin/busybox": busybox, "etc/motd": b"hello from the image\n",
              "etc/gone": b"deleted by layer 2\n", "big": b"\0" * extra_bytes}
    layer1.update({f"bin/{tool}": "busybox" for tool in ("sh", "cat", "echo", "ls", "sleep", "test", "pwd")})
    layer2 = {"etc": None, "etc/.wh.gone": b"", "etc/added": b"added by layer 2\n"}
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin", "GREETING=hi there"], "Cmd": ["/bin/sh"]}}
    manifest = [{"Config": "config.json", "RepoTags": ["tiny:1"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]
    files = {"l1/layer.tar": _tar(layer1), "l2/layer.tar": _tar(layer2),
             "config.json": json.dumps(config).encode(), "manifest.json": json.dumps(manifest).encode()}
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def apptainer(payload_bin, tmp_path):
    """Run the stand-in apptainer with HOME and its cache in tmp_path."""
    binary = _tool(payload_bin, "apptainer")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "APPTAINER_CACHEDIR": str(tmp_path / "cache"), "APPTAINER_TMPDIR": str(tmp_path)}

    def run(*args: str, input: str | None = None, extra_env: dict | None = None, prefix=()):
        return subprocess.run([*prefix, str(binary), *args], capture_output=True, text=True, input=input,
                              env={**env, **(extra_env or {})}, cwd=tmp_path, timeout=120)
    run.home = home
    return run


@root_only
def test_apptainer_builds_a_genuine_sif_and_runs_commands_in_it(apptainer, tmp_path):
    assert apptainer("--version").stdout == "apptainer version 1.5.0\n"
    archive = docker_archive(tmp_path / "tiny.tar")
    build = apptainer("build", "tiny.sif", f"docker-archive:{archive}")
    assert build.returncode == 0, build.stderr
    assert "INFO:    Build complete: tiny.sif" in build.stderr
    listing = subprocess.run(["siftool", "list", str(tmp_path / "tiny.sif")], capture_output=True, text=True,
                             check=True).stdout
    assert "Def.FILE" in listing and "JSON.Generic" in listing and "FS (Squashfs/*System/amd64)" in listing
    assert all("|1       |" in line for line in listing.splitlines() if line[:1].isdigit())  # group 1, as Apptainer
    deffile = subprocess.run(["siftool", "dump", "1", str(tmp_path / "tiny.sif")], capture_output=True, text=True).stdout
    assert deffile == f"bootstrap: docker-archive\nfrom: {archive}\n"
    run = apptainer("exec", "tiny.sif", "/bin/sh", "-c", 'echo "$GREETING"; cat /etc/motd /etc/added; test ! -e /etc/gone')
    assert (run.returncode, run.stdout) == (0, "hi there\nhello from the image\nadded by layer 2\n"), run.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data/in.txt").write_text("bound\n")
    bound = apptainer("exec", "-B", f"{tmp_path / 'data'}:/mnt/data", "tiny.sif", "cat", "/mnt/data/in.txt")
    assert bound.stdout == "bound\n", bound.stderr
    exists = apptainer("build", "tiny.sif", f"docker-archive:{archive}")
    assert exists.returncode == 255 and "already exists" in exists.stderr


@root_only
def test_apptainer_builds_from_the_docker_daemon_through_docker_save(apptainer, tmp_path):
    archive = docker_archive(tmp_path / "saved.tar")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(f'#!/bin/sh\n# stands in for `docker save NAME -o FILE`\n'
                                 f'[ "$1 $2" = "save tiny:1" ] && cp {archive} "$4"\n')
    (fake / "docker").chmod(0o755)
    build = apptainer("build", "daemon.sif", "docker-daemon:tiny:1",
                      extra_env={"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert build.returncode == 0, build.stderr
    deffile = subprocess.run(["siftool", "dump", "1", str(tmp_path / "daemon.sif")], capture_output=True, text=True)
    assert deffile.stdout == "bootstrap: docker-daemon\nfrom: tiny:1\n"
    assert apptainer("exec", "daemon.sif", "cat", "/etc/added").stdout == "added by layer 2\n"


@root_only
def test_apptainer_build_fails_when_its_tmpdir_lacks_space(apptainer, tmp_path):
    archive = docker_archive(tmp_path / "big.tar", extra_bytes=2 << 20)
    small = tmp_path / "small"
    small.mkdir()
    mount = f"mount -t tmpfs -o size=1m small {small} && exec \"$@\""
    build = apptainer("build", "big.sif", f"docker-archive:{archive}", extra_env={"APPTAINER_TMPDIR": str(small)},
                      prefix=("unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh"))
    assert build.returncode == 255
    assert "FATAL:   While performing build:" in build.stderr and "No space left on device" in build.stderr
    assert not (tmp_path / "big.sif").exists()


@root_only
def test_apptainer_instances_start_list_and_stop(apptainer, tmp_path):
    assert apptainer("build", "tiny.sif", f"docker-archive:{docker_archive(tmp_path / 'tiny.tar')}").returncode == 0
    start = apptainer("instance", "start", "tiny.sif", "web", "ignored", "by an empty startscript")
    assert start.returncode == 0 and "instance started successfully" in start.stderr, start.stderr
    try:
        listing = apptainer("instance", "list").stdout.splitlines()
        assert listing[0].split() == ["INSTANCE", "NAME", "PID", "IP", "IMAGE"]
        name, pid, image = listing[1].split()
        assert (name, image) == ("web", str(tmp_path / "tiny.sif"))
        assert os.path.exists(f"/proc/{pid}")
        assert apptainer("instance", "start", "tiny.sif", "web").returncode == 255
    finally:
        stop = apptainer("instance", "stop", "web")
    assert stop.returncode == 0 and "Stopping web instance" in stop.stderr
    assert apptainer("instance", "list").stdout.splitlines()[1:] == []


@root_only
def test_apptainer_registry_login_keeps_credentials_private(apptainer):
    login = apptainer("registry", "login", "--username", "$oauthtoken", "--password-stdin", "docker://nvcr.io",
                      input="nvapi-secret\n")
    assert login.returncode == 0, login.stderr
    config = apptainer.home / ".apptainer/docker-config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    auth = json.loads(config.read_text())["auths"]["nvcr.io"]["auth"]
    assert auth == "JG9hdXRodG9rZW46bnZhcGktc2VjcmV0"  # base64 of $oauthtoken:nvapi-secret
    assert "docker://nvcr.io" in apptainer("remote", "list").stdout


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """A registry (API v2) holding one image, that wants a Bearer token got with user:password."""

    blobs: dict[str, bytes] = {}
    manifest = b""
    credentials = base64.b64encode(b"builder:s3cret").decode()

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith("/token"):
            ok = self.headers.get("Authorization") == f"Basic {self.credentials}"
            return self._send(200 if ok else 401, b'{"token": "t0k"}' if ok else b"{}")
        if self.headers.get("Authorization") != "Bearer t0k":
            host = self.headers["Host"]
            return self._send(401, b'{"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}',
                              {"WWW-Authenticate": f'Bearer realm="http://{host}/token",service="lab",scope="repository:tiny:pull"'})
        if self.path == "/v2/tiny/manifests/1":
            return self._send(200, self.manifest, {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        digest = self.path.rsplit("/", 1)[-1]
        if digest in self.blobs:
            return self._send(200, self.blobs[digest])
        self._send(404, b'{"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}')

    def _send(self, status, body, headers=None):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def token_registry(tmp_path):
    """127.0.0.1:PORT serving the docker_archive image as tiny:1 behind token authentication."""
    with tarfile.open(docker_archive(tmp_path / "for-registry.tar")) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    digest = lambda data: "sha256:" + hashlib.sha256(data).hexdigest()  # noqa: E731
    layers = [files["l1/layer.tar"], files["l2/layer.tar"]]
    _TokenRegistry.blobs = {digest(b): b for b in [files["config.json"], *layers]}
    _TokenRegistry.manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(files["config.json"]), "digest": digest(files["config.json"])},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar", "size": len(b),
                    "digest": digest(b)} for b in layers]}).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@root_only
def test_apptainer_pulls_from_a_registry_with_the_login_it_stored(apptainer, token_registry):
    denied = apptainer("build", "--no-https", "tiny.sif", f"docker://{token_registry}/tiny:1")
    assert denied.returncode == 255 and "unauthorized: authentication required" in denied.stderr
    apptainer("registry", "login", "--username", "builder", "--password-stdin", f"docker://{token_registry}",
              input="s3cret")
    build = apptainer("build", "--no-https", "tiny.sif", f"docker://{token_registry}/tiny:1")
    assert build.returncode == 0, build.stderr
    assert apptainer("exec", "tiny.sif", "cat", "/etc/added").stdout == "added by layer 2\n"


@root_only
def test_apptainer_packages_carry_the_profile_of_the_release_they_were_built_on(repos, tmp_path):
    def profile(deb: Path) -> str:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / deb.name)], check=True)
        return (tmp_path / deb.name / "etc/apparmor.d/apptainer").read_text()
    # dist/debian/rules: the userns profile only when built on Ubuntu 23.10+, else the placeholder.
    assert "  userns,\n" in profile(next(repos.root.rglob("apptainer_*~noble_*.deb")))
    assert "userns," not in profile(next(repos.root.rglob("apptainer_*~jammy_*.deb")))
    release = repos.root / repos.apptainer_release_deb
    assert "userns," not in profile(release) and "placeholder" in profile(release)
    depends = subprocess.run(["dpkg-deb", "-f", str(release), "Depends"], capture_output=True, text=True).stdout
    assert "squashfs-tools" in depends and "siftool" in depends


def test_every_stand_in_script_says_what_it_stands_in_for():
    for path in (Path(__file__).parent / "standins/payload").iterdir():
        assert "LAB STAND-IN" in path.read_text(), path
