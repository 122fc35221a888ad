"""Slurm jobs from shipped SIF files: render the job script, check, submit through the bastion; list jobs; show logs."""
from __future__ import annotations

import re
import shlex
import time as clock
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jinja2

from provision.cluster import options as job_options
from provision.cluster.gpu_check import require_image_fits
from provision.cluster.images import ClusterImage, image_ref, verify_on_cluster
from provision.cluster.remote import (JOBS_SCRIPT, LOGS_SCRIPT, SUBMIT_SCRIPT, LoginSession, heredoc,
                                      login_session, require, values)
from provision.cluster.slurm import (SQUEUE_FORMAT, ClusterError, Job, parse_jobs, sbatch_error,
                                     unknown_partition)
from provision.connection import Timeouts
from provision.templating import make_environment

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "sbatch.j2"
# What may stand in an #SBATCH line: sbatch reads those lines itself, no shell quoting there.
DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/%@+=~-]+$")
SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^(UNLIMITED|INFINITE)$")
GPUS = re.compile(r"^([A-Za-z0-9_.-]+:)?\d+$")
FOLLOW_LIMIT = 7 * 24 * 3600.0  # seconds `logs --follow` may stream (the link is watched all along)


@dataclass(frozen=True)
class JobRequest:
    """What to run and with what: Slurm's options, the binds, the command inside the image."""

    partition: str | None = None
    gpus: int | str | None = None
    time: str | None = None
    binds: tuple[str, ...] = ()
    command: str | tuple[str, ...] = ()    # a tuple is argv (each word quoted); a str is a shell line for sh -c
    job_name: str | None = None
    nv: bool | None = None                 # apptainer --nv; default: when GPUs are asked
    sbatch_options: tuple[str, ...] = ()  # extra "--opt=value" lines
    setup: tuple[str, ...] = ()           # shell lines the job runs before Apptainer (host's job_setup)

    def validate(self) -> None:
        """ClusterError for a value that Slurm or the job script could not take as given."""
        for what, value in (("--partition", self.partition), ("--job-name", self.job_name)):
            if value and not DIRECTIVE_VALUE.match(value):
                raise ClusterError(f"{what} {value!r}: letters, digits and ._-,:/ only")
        if self.time and not SLURM_TIME.match(str(self.time)):
            raise ClusterError(f"--time {self.time!r}: Slurm takes MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
        if self.gpus not in (None, "", 0) and not GPUS.match(str(self.gpus)):
            raise ClusterError(f"--gpus {self.gpus!r}: a count, or TYPE:COUNT (e.g. v100:2)")
        for bind in self.binds:
            if not bind or "\n" in bind or "," in bind:
                raise ClusterError(f"--bind {bind!r}: SRC[:DST[:ro]], one per --bind, no commas or newlines")
        for option in self.sbatch_options:
            if not option.startswith("--") or not job_options.DIRECTIVE_VALUE.match(option):
                raise ClusterError(f"sbatch option {option!r}: --name=value with no spaces or quotes")
        if not self.command:
            raise ClusterError("no command to run in the image: give one after --")


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job: its id, where its script and output are, and the image it runs."""

    job_id: str
    host: str
    script_path: str
    output_path: str
    sif_path: str
    sha256: str

    def summary(self) -> str:
        return (f"job {self.job_id} on {self.host}: {self.sif_path} (sha256 {self.sha256[:16]}…); "
                f"script {self.script_path}, output {self.output_path}")


@dataclass(frozen=True)
class LogsResult:
    job_id: str
    output_path: str
    state: str


def command_line(command: str | Sequence[str]) -> str:
    """The command as one shell-quoted line: argv words quoted one by one, a string run by /bin/sh -c."""
    if isinstance(command, str):
        return shlex.join(["/bin/sh", "-c", command])
    return shlex.join(command)


def render_job_script(request: JobRequest, image: ClusterImage, images_dir: Path, output: str, job_name: str) -> str:
    """The job script from images/NAME/sbatch.j2 when the recipe has one, else the default template."""
    for what, value in (("output path", output),):
        if not DIRECTIVE_VALUE.match(value):
            raise ClusterError(f"{what} {value!r} cannot stand in an #SBATCH line (spaces or quotes): "
                               f"choose a sif_dir without them")
    own = Path(images_dir) / image.ref.name
    env = make_environment([own, TEMPLATES] if (own / TEMPLATE).is_file() else [TEMPLATES])
    context = {
        "job_name": job_name, "output": output, "partition": request.partition,
        "gpus": request.gpus or None, "time": request.time, "sbatch_options": list(request.sbatch_options),
        "sif": image.path, "sha256": image.sha256, "image": image.ref.name, "binds": list(request.binds),
        "nv": bool(request.gpus) if request.nv is None else request.nv, "command": command_line(request.command),
        "setup": list(request.setup),
    }
    try:
        return env.get_template(TEMPLATE).render(context)
    except jinja2.TemplateError as exc:
        where = own / TEMPLATE if (own / TEMPLATE).is_file() else TEMPLATES / TEMPLATE
        raise ClusterError(f"{where}: {type(exc).__name__}: {exc}") from None


def check_partition(image: ClusterImage, host: str, partition: str | None) -> None:
    """The partition exists (when one is named) and Slurm answered at all."""
    if image.slurm_error:
        raise ClusterError(f"{host}: Slurm does not answer: {image.slurm_error}")
    if partition and partition not in image.partitions:
        raise unknown_partition(host, partition, image.partitions)


def with_defaults(session: LoginSession, name: str, request: JobRequest, images_dir: Path,
                  flags: Mapping[str, Any] | None = None) -> JobRequest:
    """The request with Slurm options from the host's slurm_job_defaults, then the recipe's slurm:, then
    the command line (`flags` and the request's own partition/gpus/time), and the host's job_setup lines."""
    host = session.host.name
    defaults = job_options.host_defaults(session.host.vars, host)
    recipe = job_options.recipe_slurm(images_dir, name)
    job_options.sbatch_lines(job_options.split(defaults)[1], f"host {host}: slurm_job_defaults")
    job_options.sbatch_lines(job_options.split(recipe)[1], f"{Path(images_dir) / name / 'recipe.yml'}: slurm")
    given = {"partition": request.partition, "gpus": request.gpus, "time": request.time, **(flags or {})}
    own, rest = job_options.split(job_options.merged(defaults, recipe, given))
    return replace(request, partition=own.get("partition"), gpus=own.get("gpus"), time=own.get("time"),
                   sbatch_options=request.sbatch_options + job_options.sbatch_lines(rest, "job options"),
                   setup=request.setup + job_options.job_setup(session.host.vars, host))


def before_running(session: LoginSession, image: ClusterImage | None, request: JobRequest | None,
                   name_or_sif: str = "", images_dir: Path = Path("images")) -> None:
    """The one place where checks run before anything starts on the cluster (submit, notebook, shell, pull).

    It raises an error to refuse: the partition must exist and Slurm answer (when there is an image
    and a job); with GPUs asked (--nv), the image's CUDA must suit the partition's GPUs and driver.
    For pull the image does not exist yet (image None).
    """
    if image is not None and request is not None:
        check_partition(image, session.host.name, request.partition)
        if request.gpus if request.nv is None else request.nv:
            require_image_fits(session, name_or_sif, request.partition, images_dir)  # its CUDA against the nodes' GPUs


def submit_in(session: LoginSession, name_or_sif: str, request: JobRequest, images_dir: Path = Path("images"),
              rehash: bool = False, flags: Mapping[str, Any] | None = None) -> SubmitResult:
    """submit() over an open session."""
    request.validate()
    host = session.host.name
    ref = image_ref(name_or_sif, session.sif_dir)
    request = with_defaults(session, ref.name, request, images_dir, flags)
    request.validate()
    image = verify_on_cluster(session, ref, rehash)
    before_running(session, image, request, name_or_sif, images_dir)
    directory = image.path.rsplit("/", 1)[0]
    job_name = request.job_name or image.ref.name
    stamp = clock.strftime("%Y%m%d-%H%M%S")
    script_path = f"{directory}/{image.ref.name}-{stamp}.sbatch"
    output = f"{directory}/{image.ref.name}-%j.out"
    text = render_job_script(request, image, images_dir, output, job_name)
    marker, body = heredoc(text)
    script = f"cat > \"$1\" <<'{marker}' || return 3\n{body}{marker}\n{SUBMIT_SCRIPT}"
    done = session.run(script, script_path)
    if done.status != 0:
        raise sbatch_error(host, done.stderr or done.stdout, image.partitions, request.partition,
                           request.gpus, request.time)
    job_id = done.stdout.strip().splitlines()[-1].split(";")[0] if done.stdout.strip() else ""
    if not job_id.isdigit():
        raise ClusterError(f"sbatch on {host}: no job id in its answer: {done.stdout.strip()[-200:]!r}")
    return SubmitResult(job_id, host, script_path, output.replace("%j", job_id), image.path, image.sha256)


def submit(name_or_sif: str, host: str, inventory_dir: Path, partition: str | None = None,
           gpus: int | str | None = None, time: str | None = None, binds: Sequence[str] = (),
           command: str | Sequence[str] = (), job_name: str | None = None, images_dir: Path = Path("images"),
           nv: bool | None = None, sbatch_options: Sequence[str] = (), rehash: bool = False,
           accept_new: bool = False, timeouts: Timeouts = Timeouts(),
           options: Mapping[str, Any] | None = None) -> SubmitResult:
    """Run `command` in the SIF under Slurm on `host`'s cluster; return the job id and paths.

    Guarantees: nothing is submitted unless the SIF is on the cluster with the expected sha256
    (the local file's when `name_or_sif` is one, else the one ship recorded, else the one taken on
    the cluster) and the partition exists; the job script lies next to the SIF; Slurm's refusal comes
    back as one ClusterError line. `options`: cpus_per_task, nodes, ntasks_per_node, mem, account,
    qos, constraint, no_requeue (options.SBATCH_FLAGS), over the host's and the recipe's defaults.
    """
    request = JobRequest(partition, gpus, time, tuple(binds),
                         command if isinstance(command, str) else tuple(command), job_name, nv, tuple(sbatch_options))
    request.validate()
    job_options.sbatch_lines(job_options.split(options or {})[1], "job options")
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        return submit_in(session, name_or_sif, request, images_dir, rehash, options)


def jobs(host: str, inventory_dir: Path, accept_new: bool = False, timeouts: Timeouts = Timeouts()) -> list[Job]:
    """The user's jobs on `host`'s cluster, as squeue lists them."""
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        done = require(session.run(JOBS_SCRIPT, SQUEUE_FORMAT), "squeue", host)
    return parse_jobs(done.stdout)


def logs(job: str, host: str, inventory_dir: Path, follow: bool = False,
         on_line: Callable[[str], None] = print, poll: float = 2.0, accept_new: bool = False,
         timeouts: Timeouts = Timeouts()) -> LogsResult:
    """Send the job's output to on_line, line by line; with follow, stream it until the job ends.

    Finds the output from Slurm's record of the job, else as <image>-JOB.out in the host's sif_dir.
    """
    if not str(job).isdigit():
        raise ClusterError(f"job {job!r}: a Slurm job id is a number")
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        done = session.run(LOGS_SCRIPT, str(job), session.sif_dir, "1" if follow else "0", f"{poll:g}",
                           on_line=on_line, timeout=FOLLOW_LIMIT if follow else None)
    found = values(done.stderr)
    if "error" in found:
        raise ClusterError(f"{host}: {found['error'][-1]}")
    require(done, f"logs of job {job}", host)
    return LogsResult(str(job), found.get("output", [""])[-1], found.get("state", [""])[-1])


def jobs_table(rows: list[Job]):
    """A rich Table of jobs for the CLI."""
    from rich.table import Table
    table = Table("JOB", "NAME", "STATE", "TIME", "LIMIT", "PARTITION", "NODES (REASON)")
    for row in rows:
        table.add_row(row.job_id, row.name, row.state, row.elapsed, row.time_limit, row.partition, row.where)
    return table
