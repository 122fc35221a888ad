"""What Slurm prints, read: partitions from sinfo, jobs from squeue and scontrol, sbatch's refusals as one line."""
from __future__ import annotations

from dataclasses import dataclass

from provision.errors import ProvisionError

SINFO_FORMAT = "%P|%G|%l|%D|%a"          # partition (default marked *), gres, time limit, nodes, availability
SQUEUE_FORMAT = "%i|%j|%T|%M|%l|%P|%R"   # id, name, state, elapsed, limit, partition, nodes or reason


class ClusterError(ProvisionError):
    """The cluster refused or could not do what was asked (Slurm's reason, a missing SIF, a bad option)."""


@dataclass(frozen=True)
class Partition:
    """One partition as sinfo reports it: its GPUs (gres summed over its node groups) and time limit."""

    name: str
    default: bool
    gpus: bool
    max_time: str
    nodes: int
    up: bool = True


@dataclass(frozen=True)
class Job:
    """One line of squeue."""

    job_id: str
    name: str
    state: str
    elapsed: str
    time_limit: str
    partition: str
    where: str  # the node list when running, else (the reason)


def parse_partitions(output: str) -> dict[str, Partition]:
    """sinfo -h -o SINFO_FORMAT, one line per partition and node group, merged per partition."""
    found: dict[str, Partition] = {}
    for line in output.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0]:
            continue
        name, gres, limit, nodes = fields[:4]
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = "gpu" in gres.lower() and gres != "(null)"
        up = len(fields) < 5 or fields[4] == "up"
        count = int(nodes) if nodes.isdigit() else 0
        if name in found:
            old = found[name]
            found[name] = Partition(name, old.default or default, old.gpus or gpus, old.max_time,
                                    old.nodes + count, old.up and up)
        else:
            found[name] = Partition(name, default, gpus, limit, count, up)
    return found


def parse_jobs(output: str) -> list[Job]:
    """squeue -h -o SQUEUE_FORMAT."""
    jobs = []
    for line in output.splitlines():
        fields = line.strip().split("|", 6)
        if len(fields) == 7 and fields[0]:
            jobs.append(Job(*fields))
    return jobs


def sbatch_reason(stderr: str) -> str:
    """Slurm's own reason from sbatch's stderr: the line after 'Batch job submission failed:', else the last error."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Batch job submission failed:" in line:
            return line.split("Batch job submission failed:", 1)[1].strip()
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    return (errors or lines or ["no message"])[-1]


def sbatch_error(host: str, stderr: str, partitions: dict[str, Partition], partition: str | None,
                 gpus: int | str | None, time: str | None) -> ClusterError:
    """One line: `sbatch on HOST: <Slurm's reason> (<what the request and the partition say>)`."""
    reason = sbatch_reason(stderr)
    chosen = partitions.get(partition) if partition else next((p for p in partitions.values() if p.default), None)
    hint = ""
    lowered = reason.lower()
    if "partition" in lowered and "invalid" in lowered:
        return unknown_partition(host, partition or "", partitions)
    if "time limit" in lowered and chosen:
        hint = f"--time {time} asked; partition {chosen.name} allows at most {chosen.max_time}"
    elif gpus and chosen and not chosen.gpus and ("node configuration" in lowered or "gres" in lowered):
        with_gpus = [p.name for p in partitions.values() if p.gpus]
        hint = (f"partition {chosen.name} has no GPUs; "
                + (f"partitions with GPUs: {', '.join(with_gpus)}" if with_gpus else "no partition has GPUs"))
    elif gpus and ("node configuration" in lowered or "gres" in lowered):
        hint = f"--gpus {gpus} asked"
    return ClusterError(f"sbatch on {host}: {reason}" + (f" ({hint})" if hint else ""))


def unknown_partition(host: str, partition: str, partitions: dict[str, Partition]) -> ClusterError:
    """Slurm's words for an unknown partition, with the ones that exist."""
    names = ", ".join(sorted(partitions)) or "none"
    return ClusterError(f"sbatch on {host}: invalid partition specified: {partition} (partitions: {names})")
