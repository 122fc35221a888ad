"""Slurm on real lab hosts: jobs from shipped SIFs through a gateway, Slurm's refusals in one line, notebooks."""
import hashlib
import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from provision.cluster.jobs import jobs, logs, submit
from provision.cluster.notebook import notebook
from provision.cluster.pull import pull
from provision.cluster.slurm import ClusterError
from provision.lab import slurm
from provision.lab.lab import Lab
from provision.lab.rootfs import APPTAINER_FLAVOUR
from provision.ship import ship

pytestmark = pytest.mark.lab

GW, LOGIN, NODES = "clgw", "clhpc", ("clnode1", "clnode2")
SIF_DIR = "/shared/containers"
PORT = 9931
# The image: busybox, and a script that says where it runs and that it runs inside the SIF.
WHERE_SCRIPT = """#!/bin/sh
echo "inside=$(cat /etc/image-id) host=$(hostname) args=$*"
"""
PULL_USER, PULL_PASSWORD = "puller", "lab-pull-pw-5f3a9c"
# The host's job_setup: a stand-in for Lmod's `module` (the lab has none), then the line sites use.
JOB_SETUP = ['module() { echo "module $* (job setup ran)"; }', "module load apptainer"]


def listening(lab: Lab, name: str, port: int) -> bool:
    hexport = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        text = lab.exec(name, f"cat {table}", check=False).stdout
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(hexport) and fields[3] == "0A":
                return True
    return False


@pytest.fixture(scope="module")
def cluster():
    """clgw, clhpc (slurmctld; SSH only from clgw), clnode1-2 (slurmd; clnode2 has a counted gpu), /shared on all three."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root")
    if not shutil.which("iptables"):
        pytest.skip("iptables is needed to confine the login host to its gateway")
    lab = Lab()
    gw, = lab.up([GW])
    login, *_ = lab.up([LOGIN, *NODES], flavour=APPTAINER_FLAVOUR)  # Debian's own Apptainer, Slurm, munge
    made = slurm.SlurmCluster(
        LOGIN, NODES, lab.state_dir / "shared" / "cltest",
        partitions=(slurm.Partition("debug", NODES, "01:00:00", default=True),
                    slurm.Partition("gpu", (NODES[1],), "02:00:00"),
                    slurm.Partition("short", (NODES[0],), "00:10:00")),
        gpu_nodes=(NODES[1],))
    # A restarted slurmctld numbers jobs from 1 again: outputs of an earlier run must not pass for new ones.
    for stale in [*made.shared_dir.rglob("*.out"), *made.shared_dir.rglob("*.sbatch")]:
        stale.unlink()
    slurm.ensure_cluster(lab, made)
    slurm.share_home(lab, made, lab.state_dir / "shared" / "cltest-home")
    netns = lab.host(LOGIN).netns
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-F", "INPUT"], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22",
                    "!", "-s", gw.address, "-j", "DROP"], check=True)
    yield lab, made
    slurm.stop_cluster(lab, made)
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-F", "INPUT"], capture_output=True)


@pytest.fixture(scope="module")
def registry(cluster) -> str:
    """The lab registry (plain http) with a password login for PULL_USER."""
    lab, _ = cluster
    return lab.registry({PULL_USER: PULL_PASSWORD})


@pytest.fixture(scope="module")
def inventory(cluster, registry, tmp_path_factory) -> Path:
    """clhpc as ubuntu behind clgw, its sif_dir on the shared file system, a registry login, job setup lines."""
    lab, _ = cluster
    directory = tmp_path_factory.mktemp("inventory")
    shutil.copy(lab.known_hosts_path, directory / "known_hosts")
    login = {"username": PULL_USER, "password": {"secret_env": "LAB_PULL_PASSWORD"}}
    hosts = {"all": {"vars": {"ssh_key": str(lab.client_key)}, "children": {
        "hpc": {"hosts": {LOGIN: {"ansible_host": lab.host(LOGIN).address, "ansible_user": "ubuntu",
                                  "gateway": GW, "sif_dir": SIF_DIR, "registry_logins": {registry: login},
                                  "job_setup": JOB_SETUP, "apptainer_cachedir": "/shared/scratch/cache",
                                  "apptainer_tmpdir": "/shared/scratch/tmp"}}},
        "gw": {"hosts": {GW: {"ansible_host": lab.host(GW).address, "ansible_user": "root"}}}}}}
    (directory / "inventory.yml").write_text(yaml.safe_dump(hosts))
    return directory


@pytest.fixture(scope="module")
def tiny_sif(cluster, inventory, tmp_path_factory) -> Path:
    """A SIF built by Apptainer itself on the login host, copied here, then shipped back with ship."""
    lab, _ = cluster
    lab.exec(LOGIN, "rm -rf /tmp/tiny && mkdir -p /tmp/tiny/bin /tmp/tiny/etc /tmp/tiny/usr/local/bin && "
                    "cp /bin/busybox /tmp/tiny/bin/busybox && ln -s busybox /tmp/tiny/bin/sh && "
                    "for a in cat hostname echo sleep nc httpd; do ln -s busybox /tmp/tiny/bin/$a; done && "
                    "echo tiny-image > /tmp/tiny/etc/image-id")
    lab.exec(LOGIN, "cat > /tmp/tiny/usr/local/bin/where && chmod 755 /tmp/tiny/usr/local/bin/where && "
                    "rm -f /tmp/tiny.sif && apptainer -q build /tmp/tiny.sif /tmp/tiny", input=WHERE_SCRIPT.encode())
    local = tmp_path_factory.mktemp("sif") / "tiny.sif"
    shutil.copy(lab.rootfs(LOGIN) / "tmp/tiny.sif", local)
    ship(str(local), LOGIN, inventory, console=Console(quiet=True), hash_cache=local.parent / "hashes.json")
    return local


def test_login_host_refuses_ssh_except_from_the_gateway(cluster):
    lab, _ = cluster
    direct = subprocess.run(["ssh", "-i", str(lab.client_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
                             "-o", f"UserKnownHostsFile={lab.known_hosts_path}", f"ubuntu@{lab.host(LOGIN).address}",
                             "true"], capture_output=True, timeout=30)
    assert direct.returncode == 255


def test_job_runs_the_command_inside_the_sif_on_a_compute_host_and_logs_come_back(cluster, inventory, tiny_sif):
    result = submit("tiny", LOGIN, inventory, partition="gpu", gpus=1, time="00:05:00",
                    binds=["/shared:/data"], command=["where", "hello world", "$(touch /tmp/pwned)"])
    assert result.job_id.isdigit()
    assert result.script_path.startswith(f"{SIF_DIR}/tiny-") and result.script_path.endswith(".sbatch")
    lab, _ = cluster
    script = (lab.state_dir / "shared" / "cltest" / result.script_path.split("/shared/", 1)[1]).read_text()
    assert "#SBATCH --partition=gpu" in script and "exec --nv --bind /shared:/data" in script
    lines: list[str] = []
    done = logs(result.job_id, LOGIN, inventory, follow=True, on_line=lines.append, poll=0.5)
    assert done.state == "COMPLETED", (done, lines)
    assert f"inside=tiny-image host={NODES[1]} args=hello world $(touch /tmp/pwned)" in lines
    again: list[str] = []
    logs(result.job_id, LOGIN, inventory, on_line=again.append)
    assert again == lines
    assert lab.exec(NODES[1], "test -e /tmp/pwned", check=False).returncode != 0


def test_local_sif_is_checked_by_its_own_sha256(cluster, inventory, tiny_sif, tmp_path):
    result = submit(str(tiny_sif), LOGIN, inventory, command="where from-local")
    lines: list[str] = []
    logs(result.job_id, LOGIN, inventory, follow=True, on_line=lines.append, poll=0.5)
    assert any(line.startswith("inside=tiny-image") and line.endswith("args=from-local") for line in lines)
    other = tmp_path / "tiny.sif"
    other.write_bytes(tiny_sif.read_bytes() + b"changed")
    with pytest.raises(ClusterError, match=r"has sha256 [0-9a-f]{64}, the local .* has [0-9a-f]{64}"):
        submit(str(other), LOGIN, inventory, command="true")


def test_unknown_partition_is_refused_before_sbatch_naming_the_partitions(cluster, inventory, tiny_sif):
    lab, made = cluster
    before = set(made.shared_dir.rglob("*.sbatch"))
    with pytest.raises(ClusterError) as failed:
        submit("tiny", LOGIN, inventory, partition="gpux", command=["true"])
    assert str(failed.value) == f"sbatch on {LOGIN}: invalid partition specified: gpux (partitions: debug, gpu, short)"
    assert set(made.shared_dir.rglob("*.sbatch")) == before, "no job script was written"


def test_slurms_own_refusal_of_an_unknown_partition_comes_back_in_one_line(cluster, inventory, tiny_sif):
    """The partition reaches sbatch (as a raw sbatch option, past the tool's own check): Slurm refuses it."""
    lab, made = cluster
    before = set(made.shared_dir.rglob("*.sbatch"))
    with pytest.raises(ClusterError) as failed:
        submit("tiny", LOGIN, inventory, sbatch_options=["--partition=gpux"], command=["true"])
    message = str(failed.value)
    assert message.startswith(f"sbatch on {LOGIN}: invalid partition specified")
    assert message.endswith("(partitions: debug, gpu, short)") and "\n" not in message
    written = set(made.shared_dir.rglob("*.sbatch")) - before
    assert len(written) == 1 and "#SBATCH --partition=gpux" in written.pop().read_text(), "sbatch was given the script"
    squeue = lab.exec(LOGIN, "squeue -h -o %P", check=False).stdout.split()
    assert "gpux" not in squeue


def test_too_long_a_time_and_gpus_where_there_are_none_fail_in_one_line(inventory, tiny_sif):
    with pytest.raises(ClusterError) as too_long:
        submit("tiny", LOGIN, inventory, partition="short", time="02:00:00", command=["true"])
    assert str(too_long.value).startswith(f"sbatch on {LOGIN}: Requested time limit is invalid")
    assert "partition short allows at most 10:00" in str(too_long.value)
    with pytest.raises(ClusterError) as no_gpus:
        submit("tiny", LOGIN, inventory, partition="short", gpus=1, command=["true"])
    assert "partition short has no GPUs; partitions with GPUs: debug, gpu" in str(no_gpus.value)
    assert "\n" not in str(too_long.value) + str(no_gpus.value)


def test_missing_sif_says_to_ship_first(inventory):
    with pytest.raises(ClusterError, match="no SIF at /shared/containers/absent.sif; ship it first"):
        submit("absent", LOGIN, inventory, command=["true"])


def test_jobs_lists_the_users_pending_job(cluster, inventory, tiny_sif):
    result = submit("tiny", LOGIN, inventory, partition="short", command=["sleep", "30"], job_name="sleeper")
    try:
        listed = {job.job_id: job for job in jobs(LOGIN, inventory)}
        assert listed[result.job_id].name == "sleeper"
        assert listed[result.job_id].state in ("PENDING", "RUNNING", "CONFIGURING")
    finally:
        lab, _ = cluster
        lab.exec(LOGIN, f"scancel {result.job_id}")


def test_notebook_listens_on_its_port_on_the_login_host_and_stop_ends_it(cluster, inventory, tiny_sif, tmp_path):
    lab, _ = cluster
    started = notebook("tiny", LOGIN, inventory, port=PORT, command=f"exec httpd -f -p {PORT}",
                       images_dir=tmp_path, ready_timeout=30)
    try:
        assert listening(lab, LOGIN, PORT)
        gw = lab.host(GW).address
        assert started.tunnel == f"ssh -N -J root@{gw} -L {PORT}:localhost:{PORT} ubuntu@{lab.host(LOGIN).address}"
        with pytest.raises(ClusterError, match=f"port {PORT} is already in use"):
            notebook("tiny", LOGIN, inventory, port=PORT, command="true", images_dir=tmp_path, ready_timeout=5)
    finally:
        stopped = notebook("tiny", LOGIN, inventory, port=PORT, stop=True, images_dir=tmp_path)
    assert "instance notebook-tiny" in stopped.stopped
    assert not listening(lab, LOGIN, PORT)


def test_notebook_from_the_recipe_start_line_as_a_slurm_job(cluster, inventory, tiny_sif, tmp_path):
    lab, _ = cluster
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "recipe.yml").write_text("name: tiny\nports: [9999]\nstart: httpd -f -p 9999\n")
    started = notebook("tiny", LOGIN, inventory, port=PORT + 1, on_node=True, partition="short",
                       images_dir=tmp_path, ready_timeout=60)
    try:
        assert started.where.endswith(f"on {NODES[0]}")
        deadline = time.monotonic() + 30
        while not listening(lab, NODES[0], PORT + 1) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert listening(lab, NODES[0], PORT + 1)
        assert f",ubuntu@{lab.host(LOGIN).address} -L {PORT + 1}:localhost:{PORT + 1} ubuntu@{NODES[0]}" in started.tunnel
    finally:
        stopped = notebook("tiny", LOGIN, inventory, stop=True, images_dir=tmp_path)
    assert "job" in stopped.stopped


def test_the_invoke_tasks_submit_follow_logs_and_refuse_in_one_line(cluster, inventory, tiny_sif):
    import re
    import sys

    from tests.helpers import PROJECT

    def invoke(*words: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", *words], cwd=PROJECT, capture_output=True, text=True,
                              timeout=300)

    submitted = invoke("submit", "tiny", LOGIN, "--partition", "gpu", "--inventory", str(inventory),
                       "--", "where", "from the CLI")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job = re.search(r"\b(\d+)\b", submitted.stdout).group(1)
    followed = invoke("logs", job, LOGIN, "--follow", "--inventory", str(inventory))
    assert "args=from the CLI" in followed.stdout, followed.stdout + followed.stderr
    refused = invoke("submit", "tiny", LOGIN, "--partition", "gpux", "--inventory", str(inventory), "--", "true")
    assert refused.returncode == 2
    assert "invalid partition specified: gpux" in refused.stdout and "Traceback" not in refused.stdout + refused.stderr


def test_submit_options_reach_slurm_and_job_setup_runs_before_apptainer(cluster, inventory, tiny_sif):
    lab, _ = cluster
    result = submit("tiny", LOGIN, inventory, partition="short", command=["where", "options"],
                    options={"cpus_per_task": 2, "no_requeue": True, "mem": "100M"})
    shown = lab.exec(LOGIN, f"scontrol show job {result.job_id}").stdout
    assert "NumCPUs=2" in shown and "CPUs/Task=2" in shown and "Requeue=0" in shown and "MinMemoryNode=100M" in shown
    lines: list[str] = []
    assert logs(result.job_id, LOGIN, inventory, follow=True, on_line=lines.append, poll=0.5).state == "COMPLETED"
    ran = [line for line in lines if "job setup ran" in line or line.startswith("inside=")]
    assert ran == ["module load apptainer (job setup ran)", f"inside=tiny-image host={NODES[0]} args=options"], lines


def test_a_sif_copied_by_hand_is_hashed_there_recorded_and_submitted(cluster, inventory, tiny_sif):
    lab, made = cluster
    by_hand = made.shared_dir / "byhand"
    by_hand.mkdir(exist_ok=True)
    os.chown(by_hand, *(made.shared_dir.stat().st_uid, made.shared_dir.stat().st_gid))  # the user's own directory
    shutil.copy(tiny_sif, by_hand / "copied.sif")
    (by_hand / ".copied.sif.sha256").unlink(missing_ok=True)
    result = submit("/shared/byhand/copied.sif", LOGIN, inventory, command=["where", "by hand"])
    record = (by_hand / ".copied.sif.sha256").read_text().split()
    assert record[0] == result.sha256 == hashlib.sha256(tiny_sif.read_bytes()).hexdigest()
    lines: list[str] = []
    logs(result.job_id, LOGIN, inventory, follow=True, on_line=lines.append, poll=0.5)
    assert any(line.startswith("inside=tiny-image") and line.endswith("args=by hand") for line in lines), lines


def _argv_sampler(password: str, stop: threading.Event, seen: list[str], samples: list[int]) -> None:
    """Every process of this machine (every lab host's among them) has its argv read, again and again."""
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if password in argv:
                seen.append(argv)
        samples[0] += 1


@pytest.fixture(scope="module")
def pushed(cluster, registry) -> str:
    """lab/pulled:1 in the lab registry: busybox, /etc/image-id and `where` (pushed with the registry's API)."""
    from tests.oci_push import push_image
    lab, _ = cluster
    busybox = (lab.rootfs(LOGIN) / "bin/busybox").read_bytes()
    push_image(registry, PULL_USER, PULL_PASSWORD, "lab/pulled", "1",
               {"bin/busybox": (busybox, 0o755), "etc/image-id": (b"pulled-image\n", 0o644),
                "usr/local/bin/where": (WHERE_SCRIPT.encode(), 0o755)},
               {f"bin/{tool}": "busybox" for tool in ("sh", "cat", "hostname", "echo", "httpd", "chmod")}, ["where"])
    return f"{registry}/lab/pulled:1"


def test_pull_from_the_password_protected_registry_as_a_job_keeps_the_password_out_of_sight(
        cluster, inventory, registry, pushed, tiny_sif, monkeypatch):
    lab, made = cluster
    monkeypatch.setenv("LAB_PULL_PASSWORD", PULL_PASSWORD)
    stop, seen, samples = threading.Event(), [], [0]
    sampler = threading.Thread(target=_argv_sampler, args=(PULL_PASSWORD, stop, seen, samples))
    sampler.start()
    lines: list[str] = []
    try:
        result = pull(f"docker://{registry}/lab/pulled:1", LOGIN, inventory, nohttps=True, partition="debug",
                      on_line=lines.append, poll=0.5)
    finally:
        stop.set()
        sampler.join()
    assert seen == [] and samples[0] > 3
    assert result.job_id.isdigit() and result.sif_path == f"{SIF_DIR}/pulled_1.sif"
    there = lab.exec(LOGIN, f"sha256sum {SIF_DIR}/pulled_1.sif").stdout.split()[0]
    assert result.sha256 == there and f"sha256={there}" in lines
    node = lab.exec(LOGIN, f"scontrol show job {result.job_id}").stdout
    assert "BatchHost=clnode" in node
    script = next(made.shared_dir.glob("containers/pull-pulled_1-*.sbatch")).read_text()
    assert PULL_PASSWORD not in script and '"$runtime" pull $flag --force' in script
    for name, command in ((LOGIN, f"scontrol show job -dd {result.job_id}; scontrol write batch_script {result.job_id} -"),
                          (LOGIN, "grep -r -l -F -e " + shlex.quote(PULL_PASSWORD) + " /var/spool/slurmctld || true"),
                          *((node_name, "grep -r -l -F -e " + shlex.quote(PULL_PASSWORD) + " /var/spool/slurmd || true")
                            for node_name in NODES)):
        shown = lab.exec(name, command, check=False)
        assert PULL_PASSWORD not in shown.stdout + shown.stderr and not shown.stdout.strip().startswith("/var/spool")
    submitted = submit("pulled_1", LOGIN, inventory, command=["where", "pulled"])
    out: list[str] = []
    logs(submitted.job_id, LOGIN, inventory, follow=True, on_line=out.append, poll=0.5)
    assert any(line.startswith("inside=pulled-image") and line.endswith("args=pulled") for line in out), out


def test_shell_runs_a_command_on_a_terminal_on_a_compute_host_and_returns_its_status(cluster, inventory, tiny_sif,
                                                                                    tmp_path):
    from provision.cluster.shell import shell
    out = tmp_path / "out"
    with open(out, "wb") as sink:
        status = shell("tiny", LOGIN, inventory, ["sh", "-c", "test -t 0 && test -t 1 && echo tty=yes host=$(hostname); "
                                                              "exit 7"],
                       partition="short", stdin=subprocess.DEVNULL, stdout=sink)
    assert status == 7
    assert f"tty=yes host={NODES[0]}" in out.read_text(errors="replace")


def test_a_recipe_with_only_a_definition_builds_with_apptainer_and_its_notebook_listens(
        cluster, inventory, pushed, tmp_path, monkeypatch):
    from provision.pipeline.recipes import load_recipe
    from provision.pipeline.remote import Remote
    from provision.pipeline.sif import build_sif
    from tests.helpers import write
    lab, _ = cluster
    monkeypatch.setenv("LAB_PULL_PASSWORD", PULL_PASSWORD)
    write(tmp_path / "defnb" / "recipe.yml", f"""
        name: defnb
        tag: "1"
        base: {pushed}
        gpu_architectures: [volta]
        files: {{serve.sh: /usr/local/bin/serve}}
        ports: [{PORT + 2}]
        start: sh /usr/local/bin/serve
    """)
    write(tmp_path / "defnb" / "serve.sh", '#!/bin/sh\nexec httpd -f -p "$NOTEBOOK_PORT"\n')
    write(tmp_path / "defnb" / "apptainer.def.j2", """
        Bootstrap: {{ bootstrap }}
        From: {{ bootstrap_from }}

        %files
        {% for src, dest in files.items() %}
            {{ src }} {{ dest }}
        {% endfor %}

        %runscript
            exec {{ start }}
    """)
    with Remote(inventory, LOGIN) as remote:  # the login host has Apptainer: the definition needs no docker
        path = build_sif(load_recipe("defnb", tmp_path), remote, nohttps=True)
    assert path == "/home/ubuntu/provision-build/defnb.sif"
    deffile = lab.exec(LOGIN, f"apptainer inspect --deffile {path}").stdout
    assert f"From: {pushed}" in deffile and "/usr/local/bin/serve" in deffile
    started = notebook(path, LOGIN, inventory, port=PORT + 2, command="sh /usr/local/bin/serve", images_dir=tmp_path,
                       ready_timeout=60)
    try:
        assert listening(lab, LOGIN, PORT + 2), started
    finally:
        notebook(path, LOGIN, inventory, stop=True, images_dir=tmp_path)
    assert not listening(lab, LOGIN, PORT + 2)
