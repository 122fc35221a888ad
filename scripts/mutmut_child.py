"""Python processes that tests start during mutmut's stats run (scripts/mutation.sh installs this in its venv).

mutmut 3.3.1 records which functions each test calls through trampolines that read its config,
which only the mutmut process has loaded: a `python -m invoke ...` started by a test would fail
on it. Here such a process gets a config that records nothing (its calls are not counted).
"""
import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    import types

    import mutmut

    if getattr(mutmut, "config", None) is None:
        mutmut.config = types.SimpleNamespace(max_stack_depth=-1)
