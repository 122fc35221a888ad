"""invoke tasks: thin commands over the provision package (invoke --list)."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from provision.errors import ProvisionError
from provision.lab.invoke_tasks import lab

# Each task imports what it uses when it runs: `invoke provision` starts without the pipeline's modules.

INVENTORY = "hosts"


@functools.cache
def _console():
    """The terminal console, made when a task first prints: `invoke --list` does not load rich."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, emoji=False)


def _fail(exc: ProvisionError) -> Exit:
    from rich.markup import escape

    _console().print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False)
    return Exit(code=2)


@task(
    iterable=["extra"],
    help={
        "host": "host name(s) from the inventory, comma-separated",
        "group": "inventory group(s), comma-separated",
        "roles": "roles to apply, comma-separated (default: the host's roles variable)",
        "check": "change nothing; report every step that would change",
        "diff": "show unified diffs of file-like steps",
        "extra": "variable key=value (value read as YAML) or @file.yml; repeatable; wins over the inventory",
        "json": "write a JSON report to this file",
        "parallel": "hosts at once (default 50, at most 500); a pool of that many threads works through the hosts",
        "inventory": "inventory directory or file (default hosts/)",
        "accept_new": "record unknown host keys in the inventory's known_hosts instead of refusing them",
        "connect_timeout": "seconds to wait for a connection (default 15)",
        "connect_retries": "more attempts, with backoff, when a connect fails for a passing reason (no route, refused, "
                           "reset, timed out; default 2, 0 for none); a host's connect_retries variable wins",
    },
)
def provision(c, host=None, group=None, roles=None, check=False, diff=False, extra=None, json=None, parallel=None,
              inventory=INVENTORY, accept_new=False, connect_timeout=None, connect_retries=None):
    """Converge hosts to their roles: one script per host over one SSH session; idempotent."""
    from provision import cli
    from provision.connection import Timeouts
    from provision.retry import check_retries
    from provision.runner import RunOptions

    try:
        timeouts = Timeouts(connect=cli.number_option(connect_timeout or 15, "--connect-timeout", 0.1, whole=False),
                            connect_retries=check_retries(2 if connect_retries is None else connect_retries,
                                                          "--connect-retries"))
        options = RunOptions(check=check, diff=diff, accept_new=accept_new,
                             parallel=cli.number_option(parallel or 50, "--parallel"),
                             timeouts=timeouts, extra=cli.parse_extra(extra))
        results = cli.provision(Path(inventory), host, group, roles, options, json, _console())
    except ProvisionError as exc:
        raise _fail(exc) from None
    if any(r.failed for r in results.values()):
        raise Exit(code=1)


@task(help={"host": "host name from the inventory", "inventory": "inventory directory or file (default hosts/)",
            "accept_new": "record an unknown host key instead of refusing it"})
def facts(c, host, inventory=INVENTORY, accept_new=False):
    """Print a host's facts (OS, kernel, GPUs, Secure Boot, disks) as JSON."""
    from provision import cli
    from provision.connection import Timeouts

    try:
        found = cli.facts(Path(inventory), host, accept_new, Timeouts())
    except ProvisionError as exc:
        raise _fail(exc) from None
    print(json.dumps(found, indent=2))


@task(iterable=["extra"], help={"host": "host name from the inventory", "inventory": "inventory directory or file",
                                "extra": "variable key=value, e.g. nvidia_driver_branch=590 or ngc_pytorch_tag=25.08",
                                "accept_new": "record an unknown host key instead of refusing it"})
def preflight(c, host, inventory=INVENTORY, extra=None, accept_new=False):
    """Show the GPU decision for a host (driver route, branch, flavour, CUDA ceiling, NGC tag), or why it cannot work."""
    from provision import cli
    from provision.connection import Timeouts
    from provision.gpu.report import format_decision

    try:
        found, decision = cli.preflight(Path(inventory), host, cli.parse_extra(extra), accept_new, Timeouts())
    except ProvisionError as exc:
        raise _fail(exc) from None
    _console().print(format_decision(decision, title=f"GPU preflight: {host} ({found.get('os_id')} {found.get('os_version_id')}, kernel {found.get('kernel')}, Secure Boot {found.get('secure_boot')})"))


@task(iterable=["extra"], help={"roles": "roles for the check-mode run, comma-separated (default: the builder's)",
                                "save": "directory to keep nvidia-smi's raw outputs in (real captures for fixtures)",
                                "json": "write the check-mode run's report here", "extra": "variable key=value"})
def gpucheck(c, roles=None, save=None, json=None, extra=None):
    """On a machine with an NVIDIA GPU: facts, preflight, nvidia-smi's parsers and a check-mode builder run, here."""
    from provision import cli
    from provision.gpu.machine_check import BUILDER_ROLES, gpu_check

    names = roles.split(",") if roles else list(BUILDER_ROLES)
    checks = _or_fail(lambda: gpu_check(_console(), names, cli.parse_extra(extra), Path(save) if save else None, json))
    if any(check.ok is False for check in checks):
        raise Exit(code=1)


@task(iterable=["extra"], help={
    "host": "host name from the inventory (its declared_facts say what the instance will be)",
    "roles": "roles to apply, comma-separated (default: the host's roles variable)",
    "output": "file to write (default user-data.gz, or user-data.sh with --format shell)",
    "format": "mime (gzip'd MIME multipart, the default) or shell (a plain sh script)",
    "embed_secrets": "put secret values in the user-data (readable on the instance); default: read them at boot from SSM",
    "extra": "variable key=value (value read as YAML); repeatable",
    "inventory": "inventory directory or file (default hosts/)"})
def userdata(c, host, extra=None, roles=None, output=None, format="mime", embed_secrets=False, inventory=INVENTORY):
    """Render EC2 user-data that makes a fresh instance the same host `provision` makes over SSH."""
    from provision import cli

    try:
        data = cli.userdata(Path(inventory), host, roles, cli.parse_extra(extra), format, embed_secrets)
    except ProvisionError as exc:
        raise _fail(exc) from None
    target = Path(output or ("user-data.sh" if format == "shell" else "user-data.gz"))
    target.write_bytes(data.body)
    _console().print(f"{target}: {len(data.body):,} bytes of EC2's 16,384 ({data.budget_left:,} left); "
                  f"{len(data.plan.steps)} steps, script {data.script_bytes:,} bytes before {format} packing")


@task(iterable=["extra"], help={
    "host": "host name from the inventory: its ec2 variable (ami, key_name, region, ...) and declared_facts",
    "roles": "roles to apply, comma-separated (default: the host's roles variable)",
    "extra": "variable key=value (value read as YAML); repeatable",
    "embed_secrets": "put secret values in the user-data (readable on the instance); default: SSM at boot",
    "timeout": "seconds to follow the user-data run (default 3600)", "inventory": "inventory directory"})
def launch(c, host, roles=None, extra=None, embed_secrets=False, timeout=3600, inventory=INVENTORY):
    """Run an EC2 instance with the host's user-data, record its host key once it matches the console, follow the run."""
    from provision import cli
    from provision.launch import launch_and_follow

    _, status = _or_fail(lambda: launch_and_follow(Path(inventory), host, roles, cli.parse_extra(extra),
                                                   embed_secrets, _lines, float(timeout)))
    _report_status(status)


@task(name="userdata-status", help={"host": "host name from the inventory (its address answers SSH)",
                                    "timeout": "seconds to follow (default 3600)", "inventory": "inventory directory"})
def userdata_status(c, host, timeout=3600, inventory=INVENTORY):
    """Follow a host's user-data run until it says finished or failed (the log's last lines on failure)."""
    from provision.inventory import load_inventory
    from provision.userdata_status import follow_status

    def body():
        loaded = load_inventory(Path(inventory))
        return follow_status(loaded.host(host), loaded, _lines, float(timeout))
    _report_status(_or_fail(body))


def _report_status(status) -> None:
    for line in status.log_tail:
        _lines(line)
    if status.status != "finished":
        raise Exit(f"{status.host}: user-data {status.status}", code=1)


@task(name="inventory", help={"list": "every group and host with merged vars, as ansible-inventory --list prints them",
                              "host": "one host's merged variables (secrets shown as ***)",
                              "graph": "the group tree with its hosts", "group": "the group --graph starts at (default all)",
                              "inventory": "inventory directory or file (default hosts/)"})
def inventory_task(c, list=False, host=None, graph=False, group="all", inventory=INVENTORY):
    """Show the inventory as Ansible reads it: --list (JSON), --host NAME, or --graph."""
    from provision.inventory import load_inventory
    from provision.inventory_view import dump, graph as group_tree, host_view, inventory_list

    if not (list or host or graph):
        raise _fail(ProvisionError("say what to show: --list, --host NAME or --graph"))
    loaded = _or_fail(lambda: load_inventory(Path(inventory)))
    print(_or_fail(lambda: dump(host_view(loaded, host)) if host else group_tree(loaded, group) if graph
                   else dump(inventory_list(loaded))))


def _lines(line: str) -> None:
    _console().print(line, markup=False, highlight=False)


def _whole(value, option: str, least: int):
    """An optional whole-number flag; a malformed one is bad input (one line, exit 2)."""
    from provision.cli import number_option

    return None if value is None or value == "" else number_option(value, option, least)


def _or_fail(body):
    """Run body; an expected error becomes one red line and exit status 2."""
    try:
        return body()
    except ProvisionError as exc:
        raise _fail(exc) from None


@task(help={"name": "recipe in images/NAME/", "on": "builder host from the inventory", "inventory": "inventory directory"})
def build(c, name, on, inventory=INVENTORY):
    """Render images/NAME/ here, upload what changed to the builder and docker build there (log streamed)."""
    from provision.pipeline.build import build as image_build
    from provision.pipeline.recipes import load_recipe
    from provision.pipeline.remote import Remote

    def body():
        with Remote(Path(inventory), on) as remote:
            result = image_build(load_recipe(name), remote, _lines)
        _console().print(f"built {result.image} on {on} ({len(result.uploaded)} file(s) uploaded)")
    _or_fail(body)


@task(iterable=["tag"], help={"name": "recipe in images/NAME/", "on": "builder host holding the image",
            "registry": "registry (docker.io/USER, ACCOUNT.dkr.ecr.REGION.amazonaws.com[/PATH], nvcr.io/ORG, HOST:PORT[/PATH])",
            "tag": "another tag to push besides the recipe's (e.g. latest); repeatable",
            "inventory": "inventory directory"})
def push(c, name, on, registry=None, tag=None, inventory=INVENTORY):
    """Tag and push a built image; logins found by registry host (registry_logins of the builder), password on stdin."""
    from provision.pipeline.recipes import load_recipe
    from provision.pipeline.registry import check_push, push as image_push
    from provision.pipeline.remote import Remote

    def body():
        recipe = load_recipe(name)
        target = registry or recipe.values.get("registry")
        if not target:
            raise ProvisionError(f"push {name}: name a registry (--registry) or set registry: in images/{name}/recipe.yml")
        check_push(target, list(tag or []))
        with Remote(Path(inventory), on) as remote:
            _console().print(f"pushed {', '.join(image_push(recipe, remote, target, _lines, list(tag or [])))}")
    _or_fail(body)


@task(auto_shortflags=False, help={
    "name": "recipe in images/NAME/", "on": "builder host",
    "from_": "docker-daemon (the image invoke build made), registry (--from-registry) or def (apptainer.def.j2); "
             "default: registry with --from-registry, else docker-daemon, else def",
    "from_registry": "registry holding NAME:TAG (pushed earlier); with --from def the definition bootstraps from it",
    "nohttps": "the registry speaks plain http", "inventory": "inventory directory"})
def sif(c, name, on, from_=None, from_registry=None, nohttps=False, inventory=INVENTORY):
    """Build NAME.sif (NAME_ARCH.sif per platform) in the builder's build_dir (default ~/provision-build) with apptainer."""
    from provision.pipeline.recipes import load_recipe
    from provision.pipeline.remote import Remote
    from provision.pipeline.sif import build_sifs

    def body():
        with Remote(Path(inventory), on) as remote:
            for path in build_sifs(load_recipe(name), remote, from_registry, _lines, from_, nohttps):
                _console().print(f"built {on}:{path}")
    _or_fail(body)


@task(name="ship", help={"file": "a local file, or BUILDER:PATH to stream from a builder", "host": "destination host",
                         "dest_dir": "directory there (default: the host's sif_dir)", "inventory": "inventory directory",
                         "connect_retries": "more attempts when ssh fails to connect for a passing reason (default 2, 0 for none)"})
def ship_task(c, file, host, dest_dir=None, inventory=INVENTORY, connect_retries=2):
    """Carry a file (a .sif) to a host through its bastion: resumable, sha256-verified, renamed only when whole."""
    from provision.retry import check_retries
    from provision.ship import ship
    from provision.transfer.openssh import SshOptions

    def body():
        options = SshOptions(connect_retries=check_retries(connect_retries, "--connect-retries"))
        return ship(file, host, Path(inventory), dest_dir, console=_console(), options=options)
    _console().print(_or_fail(body).summary())


@task(help={"name": "recipe in images/NAME/", "builder": "builder host", "to": "cluster host to ship the SIF to",
            "registry": "also push to this registry", "inventory": "inventory directory"})
def pipeline(c, name, builder, to=None, registry=None, inventory=INVENTORY):
    """build -> push -> sif -> ship, stopping at the first failure with what to run next."""
    from provision.pipeline.chain import run_pipeline
    from provision.pipeline.recipes import IMAGES_DIR

    result = _or_fail(lambda: run_pipeline(name, builder, to, Path(inventory), registry, IMAGES_DIR, _lines, _console()))
    _console().print(f"pipeline {name}: {', '.join(result.stages)} done" + (f"; {result.shipped}" if result.shipped else ""))


def _after_double_dash() -> list[str]:
    """The words after `--` on the command line (invoke keeps them out of the task's flags)."""
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []


JOB_OPTION_HELP = {
    "cpus_per_task": "sbatch --cpus-per-task", "nodes": "sbatch --nodes", "ntasks_per_node": "sbatch --ntasks-per-node",
    "mem": "sbatch --mem, e.g. 16G", "account": "sbatch --account", "qos": "sbatch --qos",
    "constraint": "sbatch --constraint", "no_requeue": "sbatch --no-requeue",
}


def _job_options(**given) -> dict:
    """The job options given on the command line (defaults: the recipe's slurm:, the host's slurm_job_defaults)."""
    return {key: value for key, value in given.items() if value not in (None, False)}


# auto_shortflags off: with this many flags invoke would hand out "-" itself, and `--` would be read as a flag.
@task(iterable=["bind"], auto_shortflags=False, help={
    "name": "recipe name (its NAME.sif in the host's sif_dir), a local .sif, or a path on the cluster",
    "host": "cluster login host", "partition": "Slurm partition", "gpus": "GPUs for the job (adds --nv)",
    "time": "time limit, e.g. 2:00:00", "bind": "SRC:DST to bind into the container; repeatable",
    "inventory": "inventory directory", **JOB_OPTION_HELP})
def submit(c, name, host, partition=None, gpus=None, time=None, bind=None, cpus_per_task=None, nodes=None,
           ntasks_per_node=None, mem=None, account=None, qos=None, constraint=None, no_requeue=False,
           inventory=INVENTORY):
    """sbatch `apptainer exec` of a SIF on the cluster through the bastion: invoke submit NAME HOST [...] -- CMD."""
    from provision.cluster.jobs import submit as submit_job

    chosen = _job_options(cpus_per_task=cpus_per_task, nodes=nodes, ntasks_per_node=ntasks_per_node, mem=mem,
                          account=account, qos=qos, constraint=constraint, no_requeue=no_requeue)
    result = _or_fail(lambda: submit_job(name, host, Path(inventory), partition, _whole(gpus, "--gpus", 0), time,
                                         tuple(bind or ()), tuple(_after_double_dash()), options=chosen))
    _console().print(result.summary())


@task(auto_shortflags=False, help={
    "source": "docker://REGISTRY/REPO:TAG, or a recipe name pushed earlier (its registry:)", "host": "cluster login host",
    "name": "SIF name in the host's sif_dir (default as apptainer pull: REPO_TAG)",
    "on_login": "pull on the login node instead of in a Slurm job", "no_wait": "submit the job and return",
    "nohttps": "the registry speaks plain http", "partition": "Slurm partition", "time": "time limit for the job",
    "inventory": "inventory directory", **JOB_OPTION_HELP})
def pull(c, source, host, name=None, on_login=False, no_wait=False, nohttps=False, partition=None, time=None,
         cpus_per_task=None, nodes=None, ntasks_per_node=None, mem=None, account=None, qos=None, constraint=None,
         no_requeue=False, inventory=INVENTORY):
    """apptainer pull on the cluster as a Slurm job (credentials on stdin of registry login first); records sha256."""
    from provision.cluster.pull import pull as pull_sif

    chosen = _job_options(cpus_per_task=cpus_per_task, nodes=nodes, ntasks_per_node=ntasks_per_node, mem=mem,
                          account=account, qos=qos, constraint=constraint, no_requeue=no_requeue)
    _console().print(_or_fail(lambda: pull_sif(source, host, Path(inventory), name, on_login, not no_wait, nohttps,
                                            partition, time, chosen, on_line=_lines)).summary())


@task(iterable=["bind"], auto_shortflags=False, help={
    "name": "recipe name (its NAME.sif in sif_dir), a local .sif, or a path on the cluster", "host": "cluster login host",
    "on_login": "on the login node instead of a compute node (srun --pty)", "partition": "Slurm partition",
    "gpus": "GPUs (the SIF always runs with --nv)", "time": "time limit", "bind": "SRC[:DST[:ro]]; repeatable",
    "inventory": "inventory directory", **JOB_OPTION_HELP})
def shell(c, name, host, on_login=False, partition=None, gpus=None, time=None, bind=None, cpus_per_task=None,
          nodes=None, ntasks_per_node=None, mem=None, account=None, qos=None, constraint=None, no_requeue=False,
          inventory=INVENTORY):
    """A shell in the SIF on a compute node (or the login node) on a real terminal: invoke shell NAME HOST [-- CMD]."""
    from provision.cluster.shell import shell as run_shell

    chosen = _job_options(cpus_per_task=cpus_per_task, nodes=nodes, ntasks_per_node=ntasks_per_node, mem=mem,
                          account=account, qos=qos, constraint=constraint, no_requeue=no_requeue)
    status = _or_fail(lambda: run_shell(name, host, Path(inventory), tuple(_after_double_dash()), not on_login,
                                        partition, gpus, time, tuple(bind or ()), chosen))
    if status:
        raise Exit(code=status)


@task(help={"host": "cluster login host", "inventory": "inventory directory"})
def jobs(c, host, inventory=INVENTORY):
    """List your Slurm jobs on the cluster."""
    from provision.cluster.jobs import jobs as list_jobs, jobs_table

    _console().print(jobs_table(_or_fail(lambda: list_jobs(host, Path(inventory)))))


@task(help={"job": "Slurm job id", "host": "cluster login host", "follow": "stream the output until the job ends",
            "inventory": "inventory directory"})
def logs(c, job, host, follow=False, inventory=INVENTORY):
    """Show a job's output (--follow: until it ends)."""
    from provision.cluster.jobs import logs as job_logs

    result = _or_fail(lambda: job_logs(job, host, Path(inventory), follow, _lines))
    _console().print(f"job {result.job_id}: {result.state} ({result.output_path})", style="dim")


@task(iterable=["bind"], help={
    "name": "recipe name (its NAME.sif in sif_dir), or a .sif path on the cluster", "host": "cluster login host",
    "port": "port (default: the recipe's first port); the command finds it in $NOTEBOOK_PORT",
    "command": "command line to serve the notebook (default: the recipe's start: line)",
    "bind": "SRC[:DST[:ro]] to bind into the container; repeatable", "stop": "stop it instead",
    "on_node": "run it as a Slurm job on a compute node", "partition": "partition for --on-node",
    "gpus": "GPUs for --on-node", "time": "time limit for --on-node, e.g. 4:00:00", "inventory": "inventory directory"})
def notebook(c, name, host, port=None, command=None, bind=None, stop=False, on_node=False, partition=None, gpus=None,
             time=None, inventory=INVENTORY):
    """Start a notebook in a SIF (an Apptainer instance on the login host, or a job) and print the SSH tunnel to it."""
    from provision.cluster.notebook import notebook as run_notebook

    result = _or_fail(lambda: run_notebook(name, host, Path(inventory), _whole(port, "--port", 1), stop,
                                               command=command, on_node=on_node, partition=partition,
                                               gpus=_whole(gpus, "--gpus", 0), time=time, binds=tuple(bind or ())))
    _console().print(result.summary())


namespace = Collection(provision, inventory_task, facts, preflight, gpucheck, userdata, launch, userdata_status, build, push,
                       sif, ship_task, pipeline, submit, jobs, logs, notebook, pull, shell, lab)
