"""The main job on the lab's GPU stand-in: provision a systemd lab host (presenting as Ubuntu 24.04) as a build host.

The vendor repositories, the V100 and nvcr.io are the lab's stand-ins (tests/standins/); the
roles and the tool are exactly what `invoke provision --host p3-builder` runs.
Run as root from the project root: python3 scripts/lab_builder.py
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from rich.console import Console  # noqa: E402

from provision import cli  # noqa: E402
from provision.lab.lab import Lab  # noqa: E402
from provision.runner import RunOptions  # noqa: E402
from tests.labstack import BUILDER_ROLES, Stack  # noqa: E402

HOST = "builder1"


def main() -> int:
    os.environ.setdefault("NGC_API_KEY", "nvapi-lab-demo-key")
    lab = Lab()
    console = Console(soft_wrap=True)
    stack = Stack(lab, os.environ["NGC_API_KEY"])
    try:
        stack.make_gpu_host(HOST)
        inventory = stack.inventory(lab.state_dir / "builder" / "hosts", {HOST: {}})
        for attempt in ("first run (installs, reboots once for the driver)", "second run (changes nothing)"):
            console.rule(f"{HOST}: {attempt}")
            results = cli.provision(inventory, HOST, None, ",".join(BUILDER_ROLES), RunOptions(), None, console)
            if results[HOST].failed:
                return 1
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
