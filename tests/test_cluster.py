"""Unit tests of provision.cluster: Slurm's output read, refusals in one line, job scripts, SIF checks under a local sh."""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from provision.cluster.images import ImageRef, ClusterImage, image_ref, verify_on_cluster
from provision.cluster.jobs import JobRequest, command_line, render_job_script, submit
from provision.cluster.notebook import start_command, tunnel_command
from provision.cluster.remote import LOGS_SCRIPT, PREFLIGHT_SCRIPT, heredoc, login_session
from provision.cluster.slurm import (ClusterError, parse_jobs, parse_partitions, sbatch_error,
                                     sbatch_reason)
from provision.inventory import load_inventory
from provision.ship import ship

SINFO = "debug*|(null)|1:00:00|2|up\ngpu|gpu:1|2:00:00|1|up\nshort|(null)|10:00|1|up\n"
PARTITIONS = parse_partitions(SINFO)


def image(name="tiny", path="/shared/containers/tiny.sif") -> ClusterImage:
    return ClusterImage(ImageRef(name, path, None), path, "ab" * 32, "/usr/bin/apptainer", PARTITIONS, "")


def write_inventory(directory: Path, hosts: dict) -> Path:
    (directory / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return directory


# -- Slurm's output --------------------------------------------------------------------------

def test_partitions_merge_node_groups_and_mark_the_default_and_gpus():
    merged = parse_partitions(SINFO + "gpu|(null)|2:00:00|3|up\n")
    assert merged["debug"].default and not merged["gpu"].default
    assert (merged["gpu"].gpus, merged["gpu"].nodes) == (True, 4)
    assert merged["short"].max_time == "10:00" and not merged["short"].gpus


def test_squeue_lines_become_jobs_with_reasons_holding_spaces():
    [job] = parse_jobs("12|train|PENDING|0:00|1:00:00|gpu|(Nodes required for job are DOWN)\n")
    assert (job.job_id, job.state, job.where) == ("12", "PENDING", "(Nodes required for job are DOWN)")


def test_sbatch_reason_is_the_line_after_submission_failed():
    assert sbatch_reason("sbatch: error: invalid partition specified: x\n"
                         "sbatch: error: Batch job submission failed: Invalid partition name specified\n") == \
        "Invalid partition name specified"
    assert sbatch_reason("sbatch: error: Unable to contact slurm controller\n") == "Unable to contact slurm controller"


def test_unknown_partition_is_one_line_listing_the_partitions():
    error = sbatch_error("hpc01", "sbatch: error: Batch job submission failed: Invalid partition name specified",
                         PARTITIONS, "gpux", None, None)
    assert str(error) == "sbatch on hpc01: invalid partition specified: gpux (partitions: debug, gpu, short)"


def test_time_limit_refusal_names_the_partition_limit():
    error = sbatch_error("hpc01", "sbatch: error: Batch job submission failed: Requested time limit is invalid "
                         "(missing or exceeds some limit)", PARTITIONS, "short", None, "2:00:00")
    assert str(error) == ("sbatch on hpc01: Requested time limit is invalid (missing or exceeds some limit) "
                          "(--time 2:00:00 asked; partition short allows at most 10:00)")


def test_gpus_in_a_partition_without_them_names_those_with_gpus():
    error = sbatch_error("hpc01", "sbatch: error: Batch job submission failed: Requested node configuration is "
                         "not available", PARTITIONS, None, 1, None)
    assert str(error).endswith("(partition debug has no GPUs; partitions with GPUs: gpu)")
    assert "\n" not in str(error)


# -- what is asked ---------------------------------------------------------------------------

@pytest.mark.parametrize("request_, message", [
    (JobRequest(partition="gpu x", command=("true",)), "--partition"),
    (JobRequest(time="2 hours", command=("true",)), "--time"),
    (JobRequest(gpus="lots", command=("true",)), "--gpus"),
    (JobRequest(binds=("/a,/b",), command=("true",)), "--bind"),
    (JobRequest(sbatch_options=("--comment=a b",), command=("true",)), "sbatch option"),
    (JobRequest(), "no command"),
])
def test_requests_slurm_could_not_take_are_refused_before_connecting(request_, message):
    with pytest.raises(ClusterError, match=message):
        request_.validate()


def test_valid_times_and_gpu_types_pass():
    for time in ("30", "10:00", "02:00:00", "1-12", "1-12:30:00", "UNLIMITED"):
        JobRequest(time=time, gpus="v100:2", command=("true",)).validate()


def test_image_names_map_to_the_sif_dir_and_local_files_to_their_base_name(tmp_path):
    assert image_ref("fastai2", "~/containers") == ImageRef("fastai2", "~/containers/fastai2.sif", None)
    assert image_ref("fastai2.sif", "/c/") == ImageRef("fastai2", "/c/fastai2.sif", None)
    assert image_ref("/scratch/x/model.sif", "/c") == ImageRef("model", "/scratch/x/model.sif", None)
    local = tmp_path / "bert.sif"
    local.write_bytes(b"sif")
    assert image_ref(str(local), "/c") == ImageRef("bert", "/c/bert.sif", local)


# -- the job script --------------------------------------------------------------------------

def test_job_script_quotes_the_command_binds_and_image(tmp_path):
    text = render_job_script(JobRequest("gpu", 1, "10:00", ("/data dir:/data:ro",), ("python", "train.py", "$(rm -rf ~)")),
                             image(path="/c/it's.sif"), tmp_path, "/c/tiny-%j.out", "tiny")
    assert "#SBATCH --partition=gpu\n#SBATCH --gpus=1\n#SBATCH --time=10:00\n" in text
    assert "exec --nv --bind '/data dir:/data:ro' '/c/it'\"'\"'s.sif' python train.py '$(rm -rf ~)'" in text
    run = subprocess.run(["sh", "-n"], input=text, text=True, capture_output=True)
    assert run.returncode == 0, run.stderr


def test_job_script_without_gpus_has_no_gpu_line_and_no_nv(tmp_path):
    text = render_job_script(JobRequest(command="echo $HOME"), image(), tmp_path, "/c/tiny-%j.out", "tiny")
    assert "--gpus" not in text and "--partition" not in text and " --nv" not in text
    assert text.rstrip().endswith("/shared/containers/tiny.sif /bin/sh -c 'echo $HOME'")


def test_a_recipe_brings_its_own_job_script(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "sbatch.j2").write_text("#!/bin/sh\n#SBATCH --job-name={{ job_name }}\n# {{ command }}\n")
    text = render_job_script(JobRequest(command=("a", "b c")), image(), tmp_path, "/c/x-%j.out", "mine")
    assert text == "#!/bin/sh\n#SBATCH --job-name=mine\n# a 'b c'\n"


def test_an_output_path_with_spaces_is_refused(tmp_path):
    with pytest.raises(ClusterError, match="cannot stand in an #SBATCH line"):
        render_job_script(JobRequest(command=("true",)), image(), tmp_path, "/my dir/x-%j.out", "x")


def test_heredoc_marker_never_equals_a_line_of_the_text():
    marker, body = heredoc("a\nPROVISION_JOB\nb")
    assert marker == "PROVISION_JOB_1" and body.endswith("b\n")


def test_command_line_runs_a_string_through_sh():
    assert command_line("python train.py --lr 3e-4") == "/bin/sh -c 'python train.py --lr 3e-4'"
    assert command_line(["python", "a b.py"]) == "python 'a b.py'"


# -- notebooks -------------------------------------------------------------------------------

def test_start_line_port_follows_the_chosen_port(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "recipe.yml").write_text("name: nb\nports: [9999]\nstart: start-notebook --port 9999\n")
    assert start_command("nb", tmp_path, None, 8888, 9999) == "start-notebook --port 8888"
    assert start_command("nb", tmp_path, "serve --port=1", 8888, 9999) == "serve --port=1"
    with pytest.raises(ClusterError, match="has no start: field; give one with --command"):
        start_command("other", tmp_path, None, 8888, None)


def test_tunnel_goes_through_every_gateway_to_the_login_host_or_a_node(tmp_path):
    inventory = load_inventory(write_inventory(tmp_path, {
        "bastion": {"ansible_host": "bastion.example.org", "ansible_user": "jump", "ansible_port": 2222},
        "hpc01": {"ansible_host": "login.example.org", "ansible_user": "alice", "gateway": "bastion"}}))
    host = inventory.host("hpc01")
    assert tunnel_command(host, inventory, 9999) == \
        "ssh -N -J jump@bastion.example.org:2222 -L 9999:localhost:9999 alice@login.example.org"
    assert tunnel_command(host, inventory, 9999, target="gpu07") == \
        "ssh -N -J jump@bastion.example.org:2222,alice@login.example.org -L 9999:localhost:9999 alice@gpu07"


# -- the far end, under a local sh -------------------------------------------------------------

# sinfo as Slurm documents it (https://slurm.schedmd.com/sinfo.html): -h drops the header line,
# -o FORMAT prints the fields asked for, %P the partition name with "*" after the default one,
# %G its generic resources, %l its time limit, %D its node count, %a its availability. Any other
# argument is refused rather than guessed at.
FAKE_SINFO = r"""#!/usr/bin/env python3
import sys
ROWS = [dict(P="debug*", G="(null)", l="1:00:00", D="2", a="up"), dict(P="gpu", G="gpu:1", l="2:00:00", D="1", a="up"),
        dict(P="short", G="(null)", l="10:00", D="1", a="up")]
HEADS = dict(P="PARTITION", G="GRES", l="TIMELIMIT", D="NODES", a="AVAIL")
args, header, fmt = sys.argv[1:], True, "%P %a %l %D"
while args:
    arg = args.pop(0)
    if arg in ("-h", "--noheader"):
        header = False
    elif arg in ("-o", "--format") and args:
        fmt = args.pop(0)
    else:
        sys.exit(f"sinfo: error: this fake does not model {arg!r}")
fields = fmt.split("%")[1:]
def line(row):
    out = fmt.split("%")[0]
    for field in fields:
        if field[:1] not in ROWS[0]:
            sys.exit(f"sinfo: error: this fake does not model %{field[:1]}")
        out += row[field[0]] + field[1:]
    return out
if header:
    print(line(HEADS))
for row in ROWS:
    print(line(row))
"""


@pytest.fixture
def local_cluster(tmp_path, monkeypatch):
    """A `connection: local` host whose sif_dir is a temporary folder, with a fake sinfo on PATH.

    `ssh` on PATH runs its remote command here, so that ship itself (probe, receiver, sidecar)
    delivers files to the sif_dir.
    """
    bin_dir, sif_dir = tmp_path / "bin", tmp_path / "containers"
    bin_dir.mkdir()
    sif_dir.mkdir()
    (bin_dir / "sinfo").write_text(FAKE_SINFO)
    (bin_dir / "ssh").write_text('#!/bin/sh\nfor arg; do command=$arg; done\nexec sh -c "$command"\n')
    for tool in ("sinfo", "ssh"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    inventory = write_inventory(tmp_path, {"hpc": {"connection": "local", "sif_dir": str(sif_dir)}})
    return inventory, sif_dir


def shipped(sif_dir: Path, name: str, data: bytes) -> str:
    """`data` shipped as `name` into the local host's sif_dir by ship (its sidecar written by ship's receiver)."""
    source = sif_dir.parent / "outbox" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    result = ship(str(source), "hpc", sif_dir.parent, console=Console(quiet=True),
                  hash_cache=source.parent / "hashes.json")  # not beside the inventory: it would be read as one
    assert result.bytes_sent == len(data) and (sif_dir / name).read_bytes() == data
    return result.sha256


def test_the_fake_sinfo_answers_by_its_arguments(local_cluster):
    assert subprocess.run(["sinfo", "-h", "-o", "%P|%G|%l|%D|%a"], capture_output=True, text=True).stdout == SINFO
    assert subprocess.run(["sinfo", "-o", "%P"], capture_output=True, text=True).stdout == \
        "PARTITION\ndebug*\ngpu\nshort\n"
    assert subprocess.run(["sinfo", "--long"], capture_output=True, text=True).returncode != 0


def test_a_shipped_sif_is_vouched_for_by_its_sidecar_and_partitions_come_along(local_cluster):
    inventory, sif_dir = local_cluster
    sha = shipped(sif_dir, "tiny.sif", b"genuine")
    with login_session("hpc", inventory) as session:
        found = verify_on_cluster(session, image_ref("tiny", session.sif_dir))
    assert (found.path, found.sha256) == (f"{sif_dir.resolve()}/tiny.sif", sha)
    assert sorted(found.partitions) == ["debug", "gpu", "short"]


def test_a_sif_changed_after_ship_is_refused(local_cluster):
    inventory, sif_dir = local_cluster
    shipped(sif_dir, "tiny.sif", b"genuine")
    with open(sif_dir / "tiny.sif", "ab") as changed:
        changed.write(b"!")
    with login_session("hpc", inventory) as session:
        with pytest.raises(ClusterError, match=r"ship's record has .* \(it changed after ship wrote it\)"):
            verify_on_cluster(session, image_ref("tiny", session.sif_dir))


def test_a_sif_ship_did_not_carry_is_hashed_there_once_and_recorded(local_cluster, tmp_path):
    inventory, sif_dir = local_cluster
    (sif_dir / "tiny.sif").write_bytes(b"genuine")
    sha = hashlib.sha256(b"genuine").hexdigest()
    with login_session("hpc", inventory) as session:
        first = verify_on_cluster(session, image_ref("tiny", session.sif_dir))
        record = (sif_dir / ".tiny.sif.sha256").read_text().split()
        again = session.run(PREFLIGHT_SCRIPT, str(sif_dir / "tiny.sif"), "0", "%P")
        (tmp_path / "local").mkdir()
        local = tmp_path / "local" / "tiny.sif"
        local.write_bytes(b"genuine")
        from_local = verify_on_cluster(session, image_ref(str(local), session.sif_dir))
    assert first.sha256 == sha and record[0] == sha
    assert record[1:] == [str(v) for v in (len(b"genuine"), int((sif_dir / "tiny.sif").stat().st_mtime),
                                           (sif_dir / "tiny.sif").stat().st_ino)]
    assert "sha256=" not in again.stdout and f"record={sha} " in again.stdout  # the record vouches: no second hash
    assert from_local.sha256 == sha


def test_a_sif_outside_the_sif_dir_in_a_read_only_directory_is_recorded_in_home(local_cluster, tmp_path, monkeypatch):
    inventory, sif_dir = local_cluster
    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    (elsewhere / "other.img").write_bytes(b"by hand")  # not .sif: a .sif found here would be a local file
    elsewhere.chmod(0o555)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        with login_session("hpc", inventory) as session:
            found = verify_on_cluster(session, image_ref(str(elsewhere / "other.img"), session.sif_dir))
    finally:
        elsewhere.chmod(0o755)
    assert found.sha256 == hashlib.sha256(b"by hand").hexdigest() and found.ref.name == "other.img"
    if os.geteuid() != 0:  # root writes anywhere
        assert len(list((tmp_path / "home" / ".provision" / "sif-records").iterdir())) == 1


def test_unknown_partition_is_refused_before_sbatch_runs(local_cluster):
    inventory, sif_dir = local_cluster
    shipped(sif_dir, "tiny.sif", b"genuine")
    with pytest.raises(ClusterError, match=r"^sbatch on hpc: invalid partition specified: gpux \(partitions: "
                                           r"debug, gpu, short\)$"):
        submit("tiny", "hpc", inventory, partition="gpux", command=["true"])
    assert not list(sif_dir.glob("*.sbatch"))


def test_logs_of_a_forgotten_job_are_found_by_name_in_the_sif_dir(local_cluster):
    inventory, sif_dir = local_cluster
    (sif_dir / "tiny-42.out").write_text("epoch 1\nepoch 2\n")
    lines: list[str] = []
    with login_session("hpc", inventory) as session:
        done = session.run(LOGS_SCRIPT, "42", str(sif_dir), "0", "1", on_line=lines.append)
    assert done.status == 0 and lines == ["epoch 1", "epoch 2"]
    assert f"output={sif_dir}/tiny-42.out" in done.stderr


def test_a_recipe_built_for_several_platforms_resolves_to_the_sif_of_the_clusters_architecture(local_cluster):
    inventory, sif_dir = local_cluster
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    other = {"amd64": "arm64", "arm64": "amd64"}[arch]
    (sif_dir / f"multi_{arch}.sif").write_bytes(b"this architecture")
    (sif_dir / f"multi_{other}.sif").write_bytes(b"the other one")
    with login_session("hpc", inventory) as session:
        found = verify_on_cluster(session, image_ref("multi", session.sif_dir))
        (sif_dir / f"multi_{arch}.sif").unlink()
        with pytest.raises(ClusterError, match=r"no SIF at .*/multi.sif; ship it first: invoke ship multi.sif hpc"):
            verify_on_cluster(session, image_ref("multi", session.sif_dir))
    assert found.path == f"{sif_dir.resolve()}/multi_{arch}.sif"
    assert found.sha256 == hashlib.sha256(b"this architecture").hexdigest()
