"""The cluster GPU check on a real Slurm: partitions of V100s and H100s (typed gres, driver node features)."""
import os
import shutil
from pathlib import Path

import pytest
import yaml

from provision.cluster.jobs import submit
from provision.gpu.preflight import PreflightError
from provision.lab import slurm
from provision.lab.lab import Lab
from tests.helpers import write

pytestmark = pytest.mark.lab

LOGIN, NODES = "gclogin", ("gcvolta", "gchopper")
SIF_DIR = "/shared/containers"
# How sites describe their GPU nodes to Slurm: a typed gres and a node feature with the driver version.
DRIVER = "nvidia_driver_580.95.05"


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    lab = Lab()
    lab.up([LOGIN, *NODES])
    made = slurm.SlurmCluster(
        LOGIN, NODES, lab.state_dir / "shared" / "gctest",
        partitions=(slurm.Partition("volta", (NODES[0],), "01:00:00", default=True),
                    slurm.Partition("hopper", (NODES[1],), "01:00:00")),
        gpu_nodes=NODES, gpu_types=((NODES[0], "v100"), (NODES[1], "h100")),
        node_features=((NODES[0], DRIVER), (NODES[1], DRIVER)))
    slurm.ensure_cluster(lab, made)
    yield lab, made
    slurm.stop_cluster(lab, made)


@pytest.fixture(scope="module")
def inventory(cluster, tmp_path_factory) -> Path:
    lab, _ = cluster
    directory = tmp_path_factory.mktemp("inventory")
    shutil.copy(lab.known_hosts_path, directory / "known_hosts")
    hosts = {"all": {"vars": {"ssh_key": str(lab.client_key)}, "hosts": {
        LOGIN: {"ansible_host": lab.host(LOGIN).address, "ansible_user": "ubuntu", "sif_dir": SIF_DIR}}}}
    (directory / "inventory.yml").write_text(yaml.safe_dump(hosts))
    return directory


@pytest.fixture(scope="module")
def image(cluster, tmp_path_factory) -> tuple[Path, Path]:
    """A recipe on NGC PyTorch 25.08 and its image file, already in the cluster's sif_dir.

    The file is not a real SIF (no NGC image can be pulled here): submit only checks that it is
    there with the local file's sha256; the check under test reads the recipe's base.
    """
    _, made = cluster
    root = tmp_path_factory.mktemp("ngc")
    write(root / "images" / "ngc2508" / "recipe.yml",
          "name: ngc2508\ntag: '1'\nbase: nvcr.io/nvidia/pytorch:25.08-py3\ngpu_architectures: [hopper]\n")
    local = root / "ngc2508.sif"
    local.write_bytes(b"stand-in for an image built FROM nvcr.io/nvidia/pytorch:25.08-py3\n")
    remote = made.shared_dir / "containers" / "ngc2508.sif"
    remote.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(local, remote)
    os.chown(remote.parent, *(os.stat(made.shared_dir).st_uid, os.stat(made.shared_dir).st_gid))
    return local, root / "images"


def test_ngc_25_08_is_refused_on_the_v100_partition_and_accepted_on_h100s(cluster, inventory, image, tmp_path,
                                                                         monkeypatch):
    lab, _ = cluster
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    local, images = image
    with pytest.raises(PreflightError) as refused:
        submit(str(local), LOGIN, inventory, partition="volta", gpus=1, time="00:01:00", images_dir=images,
               command=["true"])
    assert str(refused.value) == (
        "image ngc2508 (nvcr.io/nvidia/pytorch:25.08-py3, CUDA 13.0) cannot run on partition volta, whose nodes "
        "have v100 (Volta, sm_70) on driver 580.95.05: it has no code for v100 (Volta, sm_70): CUDA 12.9 is the "
        "last toolkit for Volta; choose nvcr.io/nvidia/pytorch:25.06-py3 (the newest NGC PyTorch that runs "
        "there), or partition hopper (h100 (Hopper, sm_90) on driver 580.95.05), or a legacy base image")
    accepted = submit(str(local), LOGIN, inventory, partition="hopper", gpus=1, time="00:01:00", images_dir=images,
                      command=["true"])
    assert accepted.job_id.isdigit()
    lab.exec(LOGIN, f"scancel {accepted.job_id}", check=False)
