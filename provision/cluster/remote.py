"""The login host's side, in POSIX sh: scripts sent on stdin to `sh -s`, and the session that runs them."""
from __future__ import annotations

import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from provision.cluster.slurm import ClusterError
from provision.connection import Timeouts, open_transport
from provision.inventory import Host, Inventory, load_inventory

DEFAULT_SIF_DIR = "~/containers"  # as ship's: where a host without a sif_dir variable holds images
SLURM_TIMEOUT = 60                # seconds any one slurm command may take (they retry forever while munge is down)

# Every script is read whole before it runs (the body is one function called at the end with
# stdin from /dev/null), so that no command in it can eat the rest of the script.
_WRAP = "main() {{\n{body}\n}}\nmain \"$@\" </dev/null\n"

TILDE = _TILDE = r'''
tilde() { case $1 in "~") echo "$HOME" ;; "~/"*) echo "$HOME/${1#"~/"}" ;; *) echo "$1" ;; esac; }
'''

# $1 the SIF's path (may start with ~), $2 1 to hash even when a record vouches for the file.
# Prints key=value lines: path, final (size mtime inode), sidecar, record, recorded, sha256, runtime,
# partition (many), slurm_error. A SIF that ship did not carry (pulled there, copied by hand) is hashed
# here once and recorded (sha256 size mtime inode) in .NAME.sha256 beside it, or under
# ~/.provision/sif-records/ when its directory is not writable; the record vouches for it while the
# file keeps its size, mtime and inode.
PREFLIGHT_SCRIPT = _TILDE + r'''
sif=$(tilde "$1") rehash=$2
if [ ! -f "$sif" ]; then  # a recipe built for several platforms: NAME_ARCH.sif of this host's architecture
  case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  [ ! -f "${sif%.sif}_$arch.sif" ] || sif="${sif%.sif}_$arch.sif"
fi
dir=$(dirname -- "$sif") name=$(basename -- "$sif")
if [ -f "$sif" ]; then
  real="$(cd -- "$dir" && pwd -P)/$name"
  echo "path=$real"
  state=$(stat -c '%s %Y %i' -- "$sif")
  echo "final=$state"
  sidecar="" record=""
  [ -f "$dir/.$name.ship" ] && sidecar=$(head -n 1 -- "$dir/.$name.ship") && echo "sidecar=$sidecar"
  if [ -n "$sidecar" ]; then
    if [ "$rehash" = 1 ] || [ "${sidecar#* }" != "$state" ]; then
      echo "sha256=$(sha256sum -- "$sif" | cut -d ' ' -f 1)"
    fi
  else
    file="$dir/.$name.sha256"
    [ -w "$dir" ] || file="$HOME/.provision/sif-records/$(printf '%s' "$real" | sha256sum | cut -c 1-32)"
    [ -f "$file" ] && record=$(head -n 1 -- "$file") && echo "record=$record"
    if [ "$rehash" = 1 ] || [ "${record#* }" != "$state" ]; then
      sum=$(sha256sum -- "$sif" | cut -d ' ' -f 1) || return 3
      echo "sha256=$sum"
      mkdir -p -- "$(dirname -- "$file")" && printf '%s %s\n' "$sum" "$state" > "$file.tmp.$$" &&
        mv -f -- "$file.tmp.$$" "$file" && echo "recorded=$file"
    fi
  fi
else
  echo "missing=$sif"
fi
echo "runtime=$(command -v apptainer || command -v singularity)"
if command -v sinfo >/dev/null; then
  out=$(timeout ''' + str(SLURM_TIMEOUT) + r''' sinfo -h -o "$3" 2>&1) || { echo "slurm_error=$(printf '%s\n' "$out" | tail -n 1)"; return 0; }
  printf '%s\n' "$out" | sed 's/^/partition=/'
else
  echo "slurm_error=sinfo not found on PATH"
fi
'''

# $1 the job script's path; the script's text follows the heredoc marker in the body (see submit_script).
SUBMIT_SCRIPT = r'''
cd -- "$(dirname -- "$1")" || exit 3
exec timeout ''' + str(SLURM_TIMEOUT) + r''' sbatch --parsable -- "$1"
'''

# $1 job id, $2 sif_dir, $3 1 to follow until the job ends, $4 seconds between polls.
# The output's bytes go to stdout as they grow; output=, state= and error= lines go to stderr.
LOGS_SCRIPT = _TILDE + r'''
job=$1 dir=$(tilde "$2") follow=$3 poll=$4
field() { printf '%s\n' "$info" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }
info=$(timeout ''' + str(SLURM_TIMEOUT) + r''' scontrol -o show job "$job" 2>/dev/null)
out=$(field StdOut) state=$(field JobState)
if [ -z "$out" ]; then
  for f in "$dir"/*-"$job".out; do [ -f "$f" ] && out=$f; done
fi
[ -n "$out" ] || { echo "error=Slurm knows no job $job and there is no $dir/*-$job.out" >&2; return 4; }
echo "output=$out" >&2
offset=0
show() {
  [ -f "$out" ] || return 0
  size=$(stat -c %s -- "$out")
  [ "$size" -gt "$offset" ] || return 0
  tail -c +$((offset + 1)) -- "$out" | head -c $((size - offset))
  offset=$size
}
while :; do
  [ "$follow" = 1 ] && state=$(timeout ''' + str(SLURM_TIMEOUT) + r''' squeue -h -t all -j "$job" -o %T 2>/dev/null)
  show
  [ "$follow" = 1 ] || break
  case " $state " in "  "|*" COMPLETED "*|*" FAILED "*|*" CANCELLED"*|*" TIMEOUT "*|*" OUT_OF_MEMORY "*|*" NODE_FAIL "*|*" PREEMPTED "*|*" BOOT_FAIL "*|*" DEADLINE "*) break ;; esac
  sleep "$poll"
done
show
echo "state=$state" >&2
'''

JOBS_SCRIPT = r'''
exec timeout ''' + str(SLURM_TIMEOUT) + r''' squeue -h -u "$(id -un)" -o "$1"
'''


@dataclass(frozen=True)
class Completed:
    """What a script did on the login host."""

    status: int
    stdout: str
    stderr: str


def values(output: str) -> dict[str, list[str]]:
    """key=value lines, every value of each key in order."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value)
    return found


def heredoc(text: str, marker_base: str = "PROVISION_JOB") -> tuple[str, str]:
    """(marker, body) for `cat <<'MARKER'`: a marker that no line of `text` equals."""
    marker, n = marker_base, 0
    lines = set(text.splitlines())
    while marker in lines:
        n += 1
        marker = f"{marker_base}_{n}"
    return marker, text if text.endswith("\n") else text + "\n"


class LoginSession:
    """One SSH session to the cluster's login host (through its gateway): scripts in, lines out."""

    def __init__(self, host: Host, inventory: Inventory, transport):
        self.host, self.inventory, self.transport = host, inventory, transport

    @property
    def sif_dir(self) -> str:
        return str(self.host.vars.get("sif_dir") or DEFAULT_SIF_DIR)

    def run(self, body: str, *args: str, on_line: Callable[[str], None] | None = None,
            timeout: float | None = None) -> Completed:
        """Run `body` as a POSIX sh function with `args` as $1..; collect or stream stdout."""
        lines: list[str] = []
        command = shlex.join(["sh", "-s", "--", *args])
        status = self.transport.run(command, _WRAP.format(body=body), on_line or lines.append, timeout=timeout)
        return Completed(status, "\n".join(lines), getattr(self.transport, "last_stderr", "") or "")


@contextmanager
def login_session(host: str, inventory_dir: Path, accept_new: bool = False,
                  timeouts: Timeouts = Timeouts()) -> Iterator[LoginSession]:
    """A LoginSession to inventory host `host`, closed at the end of the block."""
    inventory = load_inventory(Path(inventory_dir))
    target = inventory.host(host)
    transport = open_transport(target, inventory, accept_new, timeouts)
    transport.open()
    try:
        yield LoginSession(target, inventory, transport)
    finally:
        transport.close()


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no message"


def require(done: Completed, what: str, host: str) -> Completed:
    """`done` when it succeeded; else ClusterError naming the host, the step, the exit status and stderr's tail."""
    if done.status != 0:
        raise ClusterError(f"{host}: {what} exited {done.status}: {tail(done.stderr or done.stdout)}")
    return done
