"""invoke shell: an interactive shell (or one command) in a SIF with the GPUs, through the bastion on a real terminal.

On a compute node through `srun --pty` (Slurm's interactive step), or on the login node. The SIF is
checked as submit checks it first; then OpenSSH runs with a forced terminal (`ssh -tt`), so what
the user types reaches the shell and the exit status of the shell or command comes back as ours.
"""
from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from provision.cluster.images import image_ref, verify_on_cluster
from provision.cluster.jobs import JobRequest, before_running, with_defaults
from provision.cluster.remote import login_session
from provision.connection import Timeouts
from provision.transfer.openssh import SshOptions, resolve_hop, ssh_argv

RUNTIME = "runtime=$(command -v apptainer || command -v singularity) || { echo \"neither apptainer nor singularity on $(hostname)\" >&2; exit 127; }"


def remote_command(sif: str, request: JobRequest, on_node: bool, command: Sequence[str]) -> str:
    """The login host's command line: job setup, then `apptainer shell|exec` (under `srun --pty` on a node)."""
    nv = ["--nv"] if request.nv or request.nv is None else []
    binds = [word for bind in request.binds for word in ("--bind", bind)]
    action = ["exec", *nv, *binds, sif, *command] if command else ["shell", *nv, *binds, sif]
    srun = []
    if on_node:
        srun = ["srun", "--pty", f"--job-name={request.job_name or 'shell'}"]
        srun += [f"--{key}={value}" for key, value in (("partition", request.partition), ("gpus", request.gpus),
                                                        ("time", request.time)) if value]
        srun += list(request.sbatch_options)
    script = "\n".join([*request.setup, RUNTIME, "exec " + (shlex.join(srun) + " " if srun else "") + '"$runtime" ' + shlex.join(action)])
    return shlex.join(["sh", "-c", script])


def shell(name: str, host: str, inventory_dir: Path, command: Sequence[str] = (), on_node: bool = True,
          partition: str | None = None, gpus: int | str | None = None, time: str | None = None,
          binds: Sequence[str] = (), options: Mapping[str, Any] | None = None, images_dir: Path = Path("images"),
          accept_new: bool = False, timeouts: Timeouts = Timeouts(), stdin=None, stdout=None) -> int:
    """Run a shell (or `command`) in the SIF on `host`'s cluster on a terminal; return its exit status."""
    request = JobRequest(partition, gpus, time, tuple(binds), tuple(command) or ("shell",), "shell", True)
    request.validate()
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        ref = image_ref(name, session.sif_dir)
        request = with_defaults(session, ref.name, request, images_dir, options)
        request.validate()
        image = verify_on_cluster(session, ref)
        before_running(session, image, request if on_node else None, name, images_dir)
        hop, inventory = resolve_hop(session.host, session.inventory), session.inventory
    argv = ssh_argv(hop, inventory, SshOptions(connect_timeout=int(timeouts.connect)),
                    remote_command(image.path, request, on_node, command))
    argv[argv.index("-T")] = "-tt"  # a terminal at the far end, even when ours is not one
    return subprocess.run(argv, stdin=stdin, stdout=stdout).returncode
