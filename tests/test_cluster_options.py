"""Unit tests of Slurm job options (flags over recipe over host defaults) and job setup lines in the job script."""
import subprocess

import pytest

from provision.cluster import options
from provision.cluster.jobs import JobRequest, render_job_script, submit
from provision.cluster.slurm import ClusterError
from tests.test_cluster import image, local_cluster, shipped, write_inventory  # noqa: F401 (a fixture)


def test_each_option_becomes_the_sbatch_line_slurm_spells():
    lines = options.sbatch_lines({"cpus_per_task": 2, "nodes": 1, "ntasks_per_node": 4, "mem": "16G",
                                  "account": "proj1", "qos": "normal", "constraint": "v100&ib",
                                  "no_requeue": True}, "flags")
    assert lines == ("--cpus-per-task=2", "--nodes=1", "--ntasks-per-node=4", "--mem=16G", "--account=proj1",
                     "--qos=normal", "--constraint=v100&ib", "--no-requeue")
    assert options.sbatch_lines({"no_requeue": False, "mem": None}, "flags") == ()


@pytest.mark.parametrize("given, message", [
    ({"memory": "1G"}, "flags: unknown Slurm option 'memory' (options: partition, gpus, time, cpus_per_task"),
    ({"mem": "1G\n#SBATCH --uid=0"}, "flags: --mem '1G\\n#SBATCH --uid=0': no spaces, quotes or newlines"),
    ({"account": "a b"}, "flags: --account 'a b'"),
    ({"no_requeue": "yes"}, "flags: no_requeue is true or false, not 'yes'"),
])
def test_an_option_slurm_could_not_take_is_refused_naming_it(given, message):
    with pytest.raises(ClusterError) as refused:
        options.sbatch_lines(given, "flags")
    assert str(refused.value).startswith(message)


def test_flags_win_over_the_recipe_which_wins_over_the_host():
    chosen = options.merged({"account": "site", "mem": "4G", "partition": "debug"}, {"mem": "16G", "cpus_per_task": 4},
                            {"cpus_per_task": 8, "partition": None, "qos": None})
    assert chosen == {"account": "site", "mem": "16G", "partition": "debug", "cpus_per_task": 8}


def test_job_setup_lines_run_before_apptainer_is_looked_for(tmp_path):
    setup = options.job_setup({"job_setup": ["module load apptainer", "export X=1"]}, "hpc")
    text = render_job_script(JobRequest(command=("true",), setup=setup, sbatch_options=("--no-requeue",)),
                             image(), tmp_path, "/c/x-%j.out", "x")
    assert text.index("module load apptainer\nexport X=1\n") < text.index("runtime=$(command -v apptainer")
    assert "#SBATCH --no-requeue\n" in text
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0
    with pytest.raises(ClusterError, match="host hpc: job_setup is a list of shell lines"):
        options.job_setup({"job_setup": {"module": "load"}}, "hpc")


def test_submit_takes_options_from_flags_recipe_and_host_into_the_job_script(local_cluster, tmp_path):
    _, sif_dir = local_cluster
    bin_dir, images = tmp_path / "bin", tmp_path / "images"
    (images / "tiny").mkdir(parents=True)
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 77\n")
    (bin_dir / "sbatch").chmod(0o755)
    (images / "tiny" / "recipe.yml").write_text("name: tiny\nslurm: {mem: 8G, cpus_per_task: 2}\n")
    inventory = write_inventory(tmp_path, {"hpc": {"connection": "local", "sif_dir": str(sif_dir),
                                                   "slurm_job_defaults": {"account": "site", "partition": "gpu"},
                                                   "job_setup": ["module load apptainer"]}})
    shipped(sif_dir, "tiny.sif", b"genuine")
    result = submit("tiny", "hpc", inventory, command=["true"], images_dir=images,
                    options={"cpus_per_task": 4, "no_requeue": True})
    text = open(result.script_path).read()
    for line in ("--partition=gpu", "--account=site", "--mem=8G", "--cpus-per-task=4", "--no-requeue"):
        assert f"#SBATCH {line}\n" in text
    assert "--cpus-per-task=2" not in text and "\nmodule load apptainer\n" in text
    with pytest.raises(ClusterError, match="slurm: unknown Slurm option 'ram'"):
        (images / "tiny" / "recipe.yml").write_text("name: tiny\nslurm: {ram: 8G}\n")
        submit("tiny", "hpc", inventory, command=["true"], images_dir=images)


def test_shell_runs_job_setup_then_apptainer_under_srun_pty_on_a_node():
    from provision.cluster.shell import remote_command
    request = JobRequest("gpu", 1, "1:00:00", ("/data:/data",), ("shell",), "shell", True,
                         ("--cpus-per-task=2",), ("module load apptainer",))
    line = remote_command("/c/it's.sif", request, True, ["python", "-c", "print(1)"])
    words = __import__("shlex").split(line)
    assert words[:2] == ["sh", "-c"] and words[2].startswith("module load apptainer\nruntime=$(command -v apptainer")
    assert words[2].endswith("exec srun --pty --job-name=shell --partition=gpu --gpus=1 --time=1:00:00 "
                             "--cpus-per-task=2 \"$runtime\" exec --nv --bind /data:/data '/c/it'\"'\"'s.sif' "
                             "python -c 'print(1)'")
    assert subprocess.run(["sh", "-n", "-c", words[2]]).returncode == 0
    on_login = __import__("shlex").split(remote_command("/c/x.sif", request, False, []))[2]
    assert on_login.endswith('exec "$runtime" shell --nv --bind /data:/data /c/x.sif') and "srun" not in on_login
