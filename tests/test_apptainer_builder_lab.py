"""The fastai2 recipe on a builder with the vendor's Apptainer and docker: a SIF from its Dockerfile and from its def, each notebook listening on a cluster host."""
import shutil
import time
from pathlib import Path

import pytest
import yaml

from provision.cluster.notebook import notebook
from provision.lab.lab import Lab
from provision.lab.rootfs import APPTAINER_FLAVOUR, BUILDER_FLAVOUR
from provision.pipeline.build import build
from provision.pipeline.recipes import load_recipe
from provision.pipeline.remote import Remote
from provision.lab.emulation import ensure_emulation
from provision.pipeline.registry import push
from provision.pipeline.sif import build_sif, build_sifs
from provision.ship import ship
from tests.helpers import PROJECT, write
from tests.test_cluster_lab import listening
from tests.oci_push import get_manifest, push_image, push_index

pytestmark = pytest.mark.lab

BUILDER, LOGIN = "apbuild1", "aplogin1"  # Debian sid: Apptainer 1.4.5 and docker.io from Debian, no stand-in
SIF_DIR = "/home/ubuntu/containers"
USER, PASSWORD = "builder", "lab-builder-pw-3e81"
BASE = "lab/pytorch:25.06-py3"
PROXY = "-o Acquire::http::Proxy=http://10.200.0.1:3142"  # the lab's apt cache

# LAB STAND-IN for NGC's PyTorch image: no registry outside this machine is reachable, and the real one
# is 10 GB. It carries busybox and two stand-ins, each doing only what the fastai2 recipe relies on.
# pip: `pip install --no-cache-dir NAME==VERSION...` as in the recipe's Dockerfile and %post (pip's
# `install` command, pypa/pip src/pip/_internal/commands/install.py); any other use is not modelled and
# fails (the lab has no package index to install from).
STANDIN_PIP = """#!/bin/sh
# LAB STAND-IN for pip (the fastai2 recipe's `pip install --no-cache-dir PKG==VER...` only).
[ "$1" = install ] && [ "$2" = --no-cache-dir ] && [ $# -gt 2 ] || { echo "pip stand-in: not modelled: $*" >&2; exit 3; }
shift 2
for spec in "$@"; do
  case $spec in *==*) ;; *) echo "pip stand-in: not modelled (unpinned): $spec" >&2; exit 3 ;; esac
  echo "$spec" >> /usr/lib/pip-standin-installed
done
"""
# jupyter: JupyterLab 4's `jupyter lab --no-browser --ip=IP --port=N --config=FILE` (jupyter_server's
# ServerApp traits ip, port, open_browser and the --config flag, jupyter_server/serverapp.py) serves HTTP on IP:N;
# here busybox httpd does. It refuses a config without
# `c.PasswordIdentityProvider.hashed_password` (the start script's whole point) and anything else.
STANDIN_JUPYTER = """#!/bin/sh
# LAB STAND-IN for jupyter (JupyterLab 4: `jupyter lab --no-browser --ip= --port= --config=` only).
[ "$1" = lab ] && [ "$2" = --no-browser ] || { echo "jupyter stand-in: not modelled: $*" >&2; exit 3; }
shift 2
for arg in "$@"; do
  case $arg in
    --ip=*) ip=${arg#--ip=} ;;
    --port=*) port=${arg#--port=} ;;
    --config=*) config=${arg#--config=} ;;
    *) echo "jupyter stand-in: not modelled: $arg" >&2; exit 3 ;;
  esac
done
grep -q "^c.PasswordIdentityProvider.hashed_password = 'argon2:" "$config" || { echo "jupyter stand-in: no password hash in $config" >&2; exit 1; }
echo "Jupyter Server (lab stand-in) is running at: http://$ip:$port/lab"
exec httpd -f -p "$ip:$port"
"""
TOOLS = ("sh", "cat", "chmod", "echo", "mktemp", "printf", "grep", "httpd", "mkdir", "rm", "ls", "id")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    lab = Lab()
    lab.up([BUILDER], flavour=BUILDER_FLAVOUR)
    lab.up([LOGIN], flavour=APPTAINER_FLAVOUR)
    registry = lab.registry({USER: PASSWORD})
    # No init system in these hosts: dockerd is started as docker.service would start it (vfs: the
    # host's root is an overlay), trusting the lab's plain-http registry; ubuntu is in group docker.
    daemon = '{"storage-driver": "vfs", "insecure-registries": ["%s"]}' % registry
    lab.exec(BUILDER, f"mkdir -p /etc/docker && echo '{daemon}' > /etc/docker/daemon.json && usermod -aG docker ubuntu "
                      "&& (setsid dockerd > /var/log/dockerd.log 2>&1 < /dev/null &)")
    deadline = time.monotonic() + 60
    while lab.exec(BUILDER, "docker info > /dev/null 2>&1", check=False).returncode != 0:
        assert time.monotonic() < deadline, lab.exec(BUILDER, "tail -n 20 /var/log/dockerd.log").stdout
        time.sleep(0.5)
    busybox = (lab.rootfs(LOGIN) / "bin/busybox").read_bytes()
    push_image(registry, USER, PASSWORD, BASE.split(":")[0], BASE.split(":")[1],
               {"bin/busybox": (busybox, 0o755), "usr/local/bin/pip": (STANDIN_PIP.encode(), 0o755),
                "usr/local/bin/jupyter": (STANDIN_JUPYTER.encode(), 0o755), "tmp/.keep": (b"", 0o644), "usr/lib/.keep": (b"", 0o644)},
               {f"bin/{tool}": "busybox" for tool in TOOLS}, ["sh"], path="/usr/local/bin:/bin")
    # The shipped recipe, its base swapped for the stand-in's place in the lab registry.
    images = tmp_path_factory.mktemp("images")
    shutil.copytree(PROJECT / "images" / "fastai2", images / "fastai2")
    spec = images / "fastai2" / "recipe.yml"
    spec.write_text(spec.read_text().replace("base: nvcr.io/nvidia/pytorch:25.06-py3", f"base: {registry}/{BASE}"))
    directory = tmp_path_factory.mktemp("inventory")
    shutil.copy(lab.known_hosts_path, directory / "known_hosts")
    login = {"username": USER, "password": {"secret_env": "LAB_BUILDER_PASSWORD"}}
    (directory / "inventory.yml").write_text(yaml.safe_dump({"all": {"vars": {"ssh_key": str(lab.client_key)}, "hosts": {
        BUILDER: {"ansible_host": lab.host(BUILDER).address, "ansible_user": "ubuntu", "registry_logins": {registry: login}},
        LOGIN: {"ansible_host": lab.host(LOGIN).address, "ansible_user": "ubuntu", "sif_dir": SIF_DIR}}}}))
    lab.exec(LOGIN, f"mkdir -p {SIF_DIR} /home/ubuntu/.jupyter && chown -R ubuntu: {SIF_DIR} /home/ubuntu/.jupyter && "
                    "echo 'argon2:$argon2id$v=19$m=10240,t=10,p=8$lab$hash' > /home/ubuntu/.jupyter/password.hash")
    patch = pytest.MonkeyPatch()
    patch.setenv("LAB_BUILDER_PASSWORD", PASSWORD)
    yield lab, directory, images
    patch.undo()


def _notebook_listens(lab: Lab, inventory: Path, images: Path, port: int) -> None:
    """`invoke notebook fastai2 LOGIN --port PORT`: the recipe's start line in an instance of the shipped SIF."""
    started = notebook("fastai2", LOGIN, inventory, port=port, images_dir=images, ready_timeout=90)
    try:
        assert listening(lab, LOGIN, port), started
        log = lab.exec(LOGIN, "cat /home/ubuntu/.provision/notebooks/*.log").stdout
        assert f"running at: http://127.0.0.1:{port}/lab" in log, log
    finally:
        notebook("fastai2", LOGIN, inventory, stop=True, images_dir=images)
    assert not listening(lab, LOGIN, port)


def test_fastai2_from_its_dockerfile_becomes_a_sif_with_the_real_apptainer_and_its_notebook_listens(hosts):
    lab, inventory, images = hosts
    recipe = load_recipe("fastai2", images)
    with Remote(inventory, BUILDER) as remote:
        build(recipe, remote)
        path = build_sif(recipe, remote, source="docker-daemon")
    installed = lab.exec(BUILDER, f"su ubuntu -c 'apptainer exec {path} cat /usr/lib/pip-standin-installed'").stdout
    assert installed.split() == ["fastai==2.8.2", "jupyterlab==4.4.3", "ipywidgets==8.1.7"]
    assert "apptainer version 1.4" in lab.exec(BUILDER, "apptainer --version").stdout
    assert ship(f"{BUILDER}:{Path(path).name}", LOGIN, inventory).path == f"{SIF_DIR}/fastai2.sif"
    _notebook_listens(lab, inventory, images, 9941)


def test_fastai2_from_its_definition_builds_with_the_real_apptainer_and_its_notebook_listens(hosts):
    lab, inventory, images = hosts
    recipe = load_recipe("fastai2", images)
    with Remote(inventory, BUILDER) as remote:
        path = build_sif(recipe, remote, source="def", nohttps=True)
    deffile = lab.exec(BUILDER, f"apptainer inspect --deffile {path}").stdout
    assert "Bootstrap: docker" in deffile and "pip install --no-cache-dir fastai==2.8.2" in deffile, deffile
    assert ship(f"{BUILDER}:{Path(path).name}", LOGIN, inventory).path == f"{SIF_DIR}/fastai2.sif"
    _notebook_listens(lab, inventory, images, 9942)


def _multi_platform_base(lab: Lab, registry: str) -> str:
    """lab/multibase:1, a manifest list of busybox images for amd64 and arm64 (Debian's busybox-static of each)."""
    lab.exec(BUILDER, f"dpkg --add-architecture arm64 && apt-get {PROXY} update -qq && cd /tmp && "
                      f"apt-get {PROXY} download -qq busybox-static:arm64 && "
                      "dpkg-deb -x busybox-static_*_arm64.deb /tmp/bb-arm64")
    digests = {}
    for arch, busybox in (("amd64", lab.rootfs(LOGIN) / "bin/busybox"),
                          ("arm64", lab.rootfs(BUILDER) / "tmp/bb-arm64/usr/bin/busybox")):
        digests[arch] = push_image(registry, USER, PASSWORD, "lab/multibase", f"1-{arch}",
                                   {"bin/busybox": (busybox.read_bytes(), 0o755), "etc/.keep": (b"", 0o644)},
                                   {f"bin/{tool}": "busybox" for tool in TOOLS + ("uname",)}, ["sh"],
                                   path="/usr/local/bin:/bin", arch=arch)
    push_index(registry, USER, PASSWORD, "lab/multibase", "1", digests)
    return f"{registry}/lab/multibase:1"


def test_a_recipe_for_two_platforms_pushes_one_manifest_list_and_makes_a_sif_per_architecture(hosts, tmp_path):
    lab, inventory, _ = hosts
    ensure_emulation("arm64")  # qemu-user's handler: the arm64 build's RUN step runs emulated
    registry = yaml.safe_load((inventory / "inventory.yml").read_text())["all"]["hosts"][BUILDER]["registry_logins"]
    registry = next(iter(registry))
    base = _multi_platform_base(lab, registry)
    write(tmp_path / "labmulti" / "recipe.yml", f"""
        name: labmulti
        tag: "1"
        base: {base}
        gpu_architectures: [hopper]
        platforms: [linux/amd64, linux/arm64]
        files: {{hello.sh: /usr/local/bin/hello}}
        start: hello
    """)
    write(tmp_path / "labmulti" / "hello.sh", "#!/bin/sh\necho hello from $(cat /etc/built-on)\n")
    write(tmp_path / "labmulti" / "Dockerfile.j2", """
        FROM {{ base }}
        COPY hello.sh /usr/local/bin/hello
        RUN chmod 755 /usr/local/bin/hello && uname -m > /etc/built-on
        CMD ["hello"]
    """)
    recipe = load_recipe("labmulti", tmp_path)
    with Remote(inventory, BUILDER) as remote:
        build(recipe, remote)
        pushed = push(recipe, remote, registry)
        paths = build_sifs(recipe, remote)
    assert pushed == [f"{registry}/labmulti:1"]
    listed = get_manifest(registry, USER, PASSWORD, "labmulti", "1")
    assert listed["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json", listed
    assert sorted(m["platform"]["architecture"] for m in listed["manifests"]) == ["amd64", "arm64"]
    assert paths == [f"/home/ubuntu/provision-build/labmulti_{arch}.sif" for arch in ("amd64", "arm64")]
    for path, arch, machine in zip(paths, ("amd64", "arm64"), ("x86_64", "aarch64")):
        described = lab.exec(BUILDER, f"siftool list {path}").stdout
        assert f"FS (Squashfs/*System/{arch})" in described, described
        # What the build's RUN step saw (under qemu for arm64), read from the SIF's root filesystem.
        built_on = lab.exec(BUILDER, f"id=$(siftool list {path} | awk -F'|' '/FS \\(/ {{print $1 + 0}}') && "
                            f"siftool dump $id {path} > /tmp/fs.sqfs && unsquashfs -cat /tmp/fs.sqfs etc/built-on")
        assert built_on.stdout.strip() == machine, built_on
    ran = lab.exec(BUILDER, f"su ubuntu -c 'apptainer exec {paths[0]} hello'").stdout
    assert ran.strip() == "hello from x86_64", ran
    # Real Apptainer will not run the arm64 SIF here (no emulation inside the host): the SIF says arm64.
    refused = lab.exec(BUILDER, f"su ubuntu -c 'apptainer exec {paths[1]} hello'", check=False)
    assert "image's architecture (arm64) could not run on the host's (amd64)" in refused.stderr, refused
    # The pipeline ships the SIF of the destination's architecture (amd64 here: arm64 lab hosts are not made).
    from provision.pipeline.chain import run_pipeline
    result = run_pipeline("labmulti", BUILDER, LOGIN, inventory, None, tmp_path, lambda line: None)
    assert result.sif == paths[0] and result.stages == ["build", "sif", "ship"]
    there = lab.exec(LOGIN, f"sha256sum {SIF_DIR}/labmulti_amd64.sif").stdout.split()[0]
    assert there == lab.exec(BUILDER, f"sha256sum {paths[0]}").stdout.split()[0]
