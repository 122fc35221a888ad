#!/usr/bin/env python3
"""`mutmut` 3.3.1 over the core modules only, without its wall-clock timeout, which misfires on a loaded machine.

The core modules are pyproject.toml's tool.provision-mutation.core (file patterns); the rest of
provision/ is copied unmutated. mutmut estimates each test's time from the duration of its last
phase (the teardown, near zero), then kills any mutant whose tests run 15 times longer than that:
on a shared 2-core machine that "times out" most mutants whose tests start a shell. Its CPU-time
limit (RLIMIT_CPU, 30 times the estimate plus 30 s) still stops a mutant that loops forever.
"""
import fnmatch
import os
import sys
import tomllib
from pathlib import Path

import mutmut.__main__ as mutmut_main

CORE = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["provision-mutation"]["core"]


def outside_the_core(self, path) -> bool:
    return not str(path).endswith(".py") or not any(fnmatch.fnmatch(str(path), p) for p in CORE)


mutmut_main.Config.should_ignore_for_mutation = outside_the_core

# MUTATION_TESTS="tests/a.py tests/b.py" runs those test files instead of the whole unit suite.
_load_config = mutmut_main.load_config


def load_config():
    config = _load_config()
    if os.environ.get("MUTATION_TESTS"):
        config.tests_dir = os.environ["MUTATION_TESTS"].split()
    return config


mutmut_main.load_config = load_config
mutmut_main.timeout_checker = lambda mutants: (lambda: None)

if __name__ == "__main__":
    sys.argv[0] = "mutmut"
    sys.exit(mutmut_main.cli())
