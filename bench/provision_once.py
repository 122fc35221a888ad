"""The benchmark's timed provision command: one run as `invoke provision` makes it, loading nothing of the benchmark.

    python bench/provision_once.py INVENTORY ROLES_DIR HOST[,HOST...]

Prints one JSON line: each host's status, changes and error (bench/noop.py reads it).
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's provision, wherever run from


def main(inventory: str, roles: str, hosts: str) -> None:
    from rich.console import Console

    from provision import cli
    from provision.runner import RunOptions

    with open(os.devnull, "w") as devnull:
        results = cli.provision(Path(inventory), hosts, None, None, RunOptions(parallel=len(hosts.split(","))), None,
                                Console(file=devnull), Path(roles))
    print(json.dumps({name: {"status": r.status, "changed": r.changed, "error": r.error}
                      for name, r in results.items()}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
