"""A recipe's start script (Jupyter, say) on the cluster: an Apptainer instance on the login host or a Slurm job, and its SSH tunnel."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from provision.cluster.images import image_ref, recipe_ports, recipe_start, verify_on_cluster
from provision.cluster.jobs import JobRequest, submit_in
from provision.cluster.remote import SLURM_TIMEOUT, LoginSession, login_session, require, tail, values
from provision.cluster.slurm import ClusterError
from provision.connection import Timeouts
from provision.inventory import Host, Inventory
from provision.transfer.openssh import resolve_hop

DEFAULT_PORT = 9999
READY_TIMEOUT = 120.0  # seconds for the notebook to listen on its port (or its job to start)
INSTANCE_NAME = re.compile(r"[^A-Za-z0-9_.-]")

# Where a notebook's command keeps its pid and output on the login host.
_STATE = '\nstate="$HOME/.provision/notebooks"\n'

# $1 instance name, $2 port, $3 seconds to wait, $4 SIF, $5 the start line (for sh -c), then apptainer options.
# Real Apptainer hands the arguments of `instance start` to the image's %startscript, which an image
# converted from Docker leaves empty, and `instance run` hands them to the runscript, which for such an
# image evaluates them through the shell once more (apptainer: internal/pkg/build/sources/conveyorPacker_oci.go).
# So the instance starts bare (its binds, --nv), and the start line runs in it with `exec instance://`,
# detached, its pid and output kept under ~/.provision/notebooks; stopping ends both.
START_INSTANCE_SCRIPT = _STATE + r'''
name=$1 port=$2 wait=$3 image=$4 start=$5
shift 5
runtime=$(command -v apptainer || command -v singularity) || { echo "error=neither apptainer nor singularity on $(hostname)"; return 3; }
listening() { awk -v p="$(printf ':%04X' "$1")" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
listening "$port" && { echo "error=port $port is already in use on $(hostname)"; return 4; }
mkdir -p "$state" || { echo "error=cannot make $state on $(hostname)"; return 3; }
log="$state/$name.log"
"$runtime" instance start "$@" "$image" "$name" >/dev/null 2>"$log" || {
  echo "error=$runtime instance start failed: $(grep -v '^INFO:' "$log" | tail -n 2 | tr '\n' ' ')"; return 5; }
NOTEBOOK_PORT=$port APPTAINERENV_NOTEBOOK_PORT=$port setsid "$runtime" exec "instance://$name" /bin/sh -c "$start" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$state/$name.pid"
i=0
while [ $i -lt $((wait * 5)) ]; do
  listening "$port" && { echo "listening=$port"; echo "host=$(hostname)"; echo "log=$log"; return 0; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2; i=$((i + 1))
done
kill -TERM -- "-$pid" 2>/dev/null
"$runtime" instance stop "$name" >/dev/null 2>&1
rm -f "$state/$name.pid"
echo "error=nothing listened on port $port within ${wait}s; the instance was stopped; its output ($log): $(grep -v -e '^INFO:' -e '^WARNING:' "$log" | tail -n 3 | tr '\n' ' ')"
return 6
'''

# $1 instance name, $2 job name: stops the instance and its command, and cancels the user's jobs of that name.
STOP_SCRIPT = _STATE + r'''
name=$1 job=$2 stopped=""
runtime=$(command -v apptainer || command -v singularity)
if [ -f "$state/$name.pid" ]; then
  kill -TERM -- "-$(cat "$state/$name.pid")" 2>/dev/null
  rm -f "$state/$name.pid"
fi
if [ -n "$runtime" ] && "$runtime" instance list 2>/dev/null | grep -q "^$name "; then
  "$runtime" instance stop "$name" >/dev/null 2>&1 && stopped="instance $name"
fi
if command -v squeue >/dev/null; then
  ids=$(timeout ''' + str(SLURM_TIMEOUT) + r''' squeue -h -u "$(id -un)" -n "$job" -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${ids% }" ]; then
    timeout ''' + str(SLURM_TIMEOUT) + r''' scancel $ids && stopped="${stopped:+$stopped, }job ${ids% }"
  fi
fi
echo "stopped=$stopped"
'''

# $1 job id, $2 seconds: waits for the job to run; prints its state and node.
WAIT_RUNNING_SCRIPT = r'''
i=0
while [ $i -lt "$2" ]; do
  line=$(timeout ''' + str(SLURM_TIMEOUT) + r''' squeue -h -t all -j "$1" -o '%T %N' 2>/dev/null)
  case $line in RUNNING*|COMPLETED*|FAILED*|CANCELLED*|TIMEOUT*|NODE_FAIL*|OUT_OF_MEMORY*|"") break ;; esac
  sleep 1; i=$((i + 1))
done
echo "state=${line%% *}"
echo "node=${line#* }"
'''


@dataclass(frozen=True)
class NotebookResult:
    """A running notebook (or a stopped one): where it runs and the command that reaches it from the laptop."""

    name: str
    host: str
    where: str            # "instance NAME on HOST" or "job ID on NODE"
    port: int
    tunnel: str           # the ssh command for the laptop ('' after a stop)
    stopped: str = ""

    def summary(self) -> str:
        if not self.tunnel:
            return f"{self.host}: stopped {self.stopped}" if self.stopped else f"{self.host}: no notebook {self.name} was running"
        return f"{self.where}, port {self.port}; from your laptop:\n  {self.tunnel}\nthen open http://localhost:{self.port}/"


def instance_name(name: str) -> str:
    return "notebook-" + INSTANCE_NAME.sub("-", name)


def tunnel_command(host: Host, inventory: Inventory, port: int, target: str | None = None) -> str:
    """`ssh -J GATEWAY[,...] -L PORT:localhost:PORT USER@HOST`: the laptop's way to the port through the bastion.

    With `target` (a compute node), the login host joins the jumps and the tunnel ends on the node.
    """
    hop = resolve_hop(host, inventory)
    jumps, gateway = [], hop.gateway
    while gateway is not None:
        jumps.insert(0, _spec(gateway.user, gateway.address, gateway.port))
        gateway = gateway.gateway
    final_port = hop.port
    if target:
        jumps.append(_spec(hop.user, hop.address, hop.port))
        address, final_port = target, None
    else:
        address = hop.address
    words = ["ssh", "-N"] + (["-J", ",".join(jumps)] if jumps else []) + ["-L", f"{port}:localhost:{port}"]
    words += (["-p", str(final_port)] if final_port else []) + [f"{hop.user}@{address}" if hop.user else address]
    return shlex.join(words)


def _spec(user: str | None, address: str, port: int | None) -> str:
    return (f"{user}@" if user else "") + address + (f":{port}" if port else "")


def start_command(name: str, images_dir: Path, command: str | None, port: int, recipe_port: int | None) -> str:
    """The recipe's start: line (or --command), its port changed to `port` when the recipe names another."""
    start = command or recipe_start(images_dir, name)
    if not start:
        raise ClusterError(f"no start command for {name}: {Path(images_dir) / name / 'recipe.yml'} has no start: "
                           f"field; give one with --command")
    if recipe_port and recipe_port != port and not command:
        words = shlex.split(start)
        start = shlex.join(str(port) if w == str(recipe_port) else
                           (w.replace(f"={recipe_port}", f"={port}") if w.endswith(f"={recipe_port}") else w)
                           for w in words)
    return start


def notebook(name: str, host: str, inventory_dir: Path, port: int | None = None, stop: bool = False,
             command: str | None = None, on_node: bool = False, partition: str | None = None,
             gpus: int | str | None = None, time: str | None = None, binds: Sequence[str] = (),
             images_dir: Path = Path("images"), ready_timeout: float = READY_TIMEOUT,
             accept_new: bool = False, timeouts: Timeouts = Timeouts()) -> NotebookResult:
    """Start NAME's start script on `host` (an Apptainer instance there, or with on_node a Slurm job) and wait
    until it listens on `port`; with `stop`, end the instance and cancel the job instead.

    The SIF is checked as submit checks it. The port is the recipe's first port unless given
    (then the start line's port is replaced); the start script finds it in $NOTEBOOK_PORT too.
    """
    ports = recipe_ports(images_dir, name)
    port = int(port or (ports[0] if ports else DEFAULT_PORT))
    with login_session(host, inventory_dir, accept_new, timeouts) as session:
        if stop:
            done = require(session.run(STOP_SCRIPT, instance_name(name), instance_name(name)), "notebook stop", host)
            return NotebookResult(name, host, "", port, "", values(done.stdout).get("stopped", [""])[-1])
        start = start_command(name, images_dir, command, port, ports[0] if ports else None)
        if on_node:
            return _as_job(session, name, port, start, partition, gpus, time, binds, images_dir, ready_timeout)
        return _as_instance(session, name, port, start, gpus, binds, ready_timeout)


def _as_instance(session: LoginSession, name: str, port: int, start: str, gpus, binds: Sequence[str],
                 ready_timeout: float) -> NotebookResult:
    host = session.host.name
    image = verify_on_cluster(session, image_ref(name, session.sif_dir))
    options = ["--nv"] + [word for bind in binds for word in ("--bind", bind)]
    done = session.run(START_INSTANCE_SCRIPT, instance_name(name), str(port), str(int(ready_timeout)),
                       image.path, start, *options, timeout=ready_timeout + 60)
    found = values(done.stdout)
    if "error" in found or done.status != 0:
        raise ClusterError(f"notebook on {host}: {found.get('error', [tail(done.stderr)])[-1]}")
    where = f"instance {instance_name(name)} on {host} ({found.get('host', ['?'])[-1]})"
    return NotebookResult(name, host, where, port, tunnel_command(session.host, session.inventory, port))


def _as_job(session: LoginSession, name: str, port: int, start: str, partition, gpus, time,
            binds: Sequence[str], images_dir: Path, ready_timeout: float) -> NotebookResult:
    host = session.host.name
    request = JobRequest(partition, gpus, time, tuple(binds), start, instance_name(name), True,
                         (f"--export=ALL,NOTEBOOK_PORT={port}",))
    result = submit_in(session, name, request, images_dir)
    done = require(session.run(WAIT_RUNNING_SCRIPT, result.job_id, str(int(ready_timeout)),
                               timeout=ready_timeout + 60), "squeue", host)
    found = values(done.stdout)
    state, node = found.get("state", [""])[-1], found.get("node", [""])[-1]
    if state != "RUNNING":
        raise ClusterError(f"notebook on {host}: job {result.job_id} is {state or 'gone'} after {ready_timeout:g}s, "
                           f"not running; see invoke logs {result.job_id} {host}")
    return NotebookResult(name, host, f"job {result.job_id} on {node}", port,
                          tunnel_command(session.host, session.inventory, port, target=node))
