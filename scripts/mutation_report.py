#!/usr/bin/env python3
"""After `mutmut run` (scripts/mutation.sh): each surviving mutant, then the survival rate per module."""
from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.__main__ import status_by_exit_code  # mutmut 3.3.1: exit code of a mutant's test run -> status


def main(patterns: list[str]) -> int:
    counts: dict[str, Counter] = {}
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        module = str(meta.relative_to("mutants"))[:-len(".py.meta")].replace("/", ".")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in sorted(codes.items()):
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            status = status_by_exit_code.get(code, f"exit {code}")
            counts.setdefault(module, Counter())[status] += 1
            if status == "survived":
                print(f"survived  {name}   (mutmut show {name})")
    print(f"\n{'module':36} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'other':>6} {'survival':>9}")
    total = Counter()
    for module, c in sorted(counts.items()):
        total.update(c)
        print(_row(module, c))
    print(_row("all", total))
    return 0


def _row(name: str, c: Counter) -> str:
    checked = c["killed"] + c["survived"] + c["no tests"]
    other = sum(c.values()) - checked - c["not checked"]
    rate = f"{100 * (c['survived'] + c['no tests']) / checked:.0f}%" if checked else "-"
    return f"{name:36} {sum(c.values()):>8} {c['killed']:>7} {c['survived']:>9} {c['no tests']:>9} {other:>6} {rate:>9}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
