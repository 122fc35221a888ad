"""Slurm job options from the command line, the recipe's `slurm:` and the host's `slurm_job_defaults`, and job setup lines."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from provision.cluster.slurm import ClusterError
from provision.yamlfile import load_yaml

# What may stand in an #SBATCH line: sbatch reads those lines itself, no shell quoting there.
DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/%@+=~&|()!*\[\]-]+$")
# Options beside partition, gpus and time, each as sbatch spells it.
SBATCH_FLAGS = {
    "cpus_per_task": "--cpus-per-task", "nodes": "--nodes", "ntasks_per_node": "--ntasks-per-node",
    "mem": "--mem", "account": "--account", "qos": "--qos", "constraint": "--constraint",
    "no_requeue": "--no-requeue",
}
REQUEST_FIELDS = ("partition", "gpus", "time")  # defaults for JobRequest's own fields
SWITCHES = ("no_requeue",)                      # flags without a value


def sbatch_lines(options: Mapping[str, Any], where: str) -> tuple[str, ...]:
    """`--flag=value` (or `--flag`) for each option set; ClusterError naming `where` for an unknown or unsafe one."""
    lines = []
    for key, value in options.items():
        if key not in SBATCH_FLAGS:
            raise ClusterError(f"{where}: unknown Slurm option {key!r} "
                               f"(options: {', '.join([*REQUEST_FIELDS, *SBATCH_FLAGS])})")
        if value is None or value is False or value == "":
            continue
        if key in SWITCHES:
            if value is not True:
                raise ClusterError(f"{where}: {key} is true or false, not {value!r}")
            lines.append(SBATCH_FLAGS[key])
            continue
        if isinstance(value, bool) or not DIRECTIVE_VALUE.match(str(value)):
            raise ClusterError(f"{where}: {SBATCH_FLAGS[key]} {value!r}: no spaces, quotes or newlines")
        lines.append(f"{SBATCH_FLAGS[key]}={value}")
    return tuple(lines)


def recipe_slurm(images_dir: Path, name: str) -> dict[str, Any]:
    """The `slurm:` mapping of images/NAME/recipe.yml ({} when there is none)."""
    path = Path(images_dir) / name / "recipe.yml"
    if not path.is_file():
        return {}
    data = load_yaml(path, ClusterError)
    slurm = data.get("slurm") if isinstance(data, dict) else None
    if slurm is not None and not isinstance(slurm, dict):
        raise ClusterError(f"{path}: slurm: is a mapping of Slurm options, e.g. {{mem: 16G, cpus_per_task: 4}}")
    return dict(slurm or {})


def host_defaults(host_vars: Mapping[str, Any], host: str) -> dict[str, Any]:
    """The host's `slurm_job_defaults` mapping ({} when unset)."""
    defaults = host_vars.get("slurm_job_defaults") or {}
    if not isinstance(defaults, dict):
        raise ClusterError(f"host {host}: slurm_job_defaults is a mapping of Slurm options, e.g. {{account: proj1}}")
    return dict(defaults)


def job_setup(host_vars: Mapping[str, Any], host: str) -> tuple[str, ...]:
    """The host's `job_setup` lines, run by every job before Apptainer (e.g. `module load apptainer`).

    They are shell lines by design (the user's own site setup, like a role's `shell`): one line
    each, no newlines inside one.
    """
    lines = host_vars.get("job_setup") or []
    if isinstance(lines, str):
        lines = [lines]
    if not isinstance(lines, list) or not all(isinstance(line, str) and "\n" not in line for line in lines):
        raise ClusterError(f"host {host}: job_setup is a list of shell lines, e.g. ['module load apptainer']")
    return tuple(lines)


def merged(host: Mapping[str, Any], recipe: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Host defaults, then the recipe's, then the command line's (None in flags: not given)."""
    result = dict(host)
    result.update(recipe)
    result.update({key: value for key, value in flags.items() if value is not None})
    return result


def split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(partition/gpus/time, the rest)."""
    own = {key: value for key, value in options.items() if key in REQUEST_FIELDS}
    rest = {key: value for key, value in options.items() if key not in REQUEST_FIELDS}
    return own, rest
