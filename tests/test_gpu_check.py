"""The GPU check for a real machine: its comparisons on real nvidia-smi captures, and a run on this machine."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from provision.gpu.machine_check import compare_smi, gpu_check, smi_checks
from provision.gpu.nvidia_smi import NVIDIA_SMI_QUERY_ARGS, parse_query
from tests.helpers import PROJECT

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"
H100_FACTS = {"gpus": [{"slot": "0000:00:09.0", "pci_id": "10de:2330", "class": "0x030200"}]}


def query(name: str = "query-h100-1x-590.48.01.csv") -> str:
    return (FIXTURES / name).read_text()


def test_an_h100_capture_matches_its_table_row():
    checks = compare_smi(H100_FACTS, parse_query(query()))
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("nvidia-smi query", True, "driver 590.48.01, 1 GPU(s)"),
        ("GPU 0 NVIDIA H100 80GB HBM3", True, "10de:2330 = NVIDIA H100 80GB HBM3 (Hopper, sm_90)")]


def test_a_gpu_missing_from_the_table_is_reported_with_the_row_to_add():
    facts = {"gpus": [{"slot": "0000:00:09.0", "pci_id": "10de:ffff", "class": "0x030200"}]}
    (_, missing) = compare_smi(facts, parse_query(query()))
    assert (missing.ok, missing.detail) == (False, '10de:ffff is not in gpu_compat.yml: add {pci_id: "10de:ffff", '
                                                   'model: "NVIDIA H100 80GB HBM3", compute_capability: "9.0"}')


def test_a_compute_capability_that_disagrees_with_the_table_is_reported():
    text = query().replace(", 9.0,", ", 9.1,")
    (_, wrong) = compare_smi(H100_FACTS, parse_query(text))
    assert wrong.detail == "10de:2330: nvidia-smi says compute capability 9.1, gpu_compat.yml 9.0: correct the row"


def test_count_mismatch_and_driver_failure_are_reported():
    two = {"gpus": H100_FACTS["gpus"] + [{"slot": "0000:00:0a.0", "pci_id": "10de:2330", "class": "0x030200"}]}
    assert any(c.name == "GPU count" and not c.ok for c in compare_smi(two, parse_query(query())))
    (failed,) = compare_smi(H100_FACTS, parse_query((FIXTURES / "error-no-driver.txt").read_text()))
    assert failed.ok is False and failed.detail.startswith("nvidia-smi failed (no-driver)")


def test_both_outputs_are_read_and_saved_as_captures(tmp_path):
    outputs = {tuple(NVIDIA_SMI_QUERY_ARGS): query(), ("nvidia-smi",): (FIXTURES / "h100-1x-590.48.01.txt").read_text()}
    checks = smi_checks(H100_FACTS, run=lambda args: outputs[tuple(args)], save=tmp_path / "captures")
    assert [c.ok for c in checks] == [True, True, True]
    assert checks[-1].detail == "driver 590.48.01, CUDA 13.1, 1 GPU(s)"
    assert (tmp_path / "captures" / "query.csv").read_text() == query()


def test_gpu_check_runs_here_through_the_local_transport(tmp_path):
    console = Console(record=True, width=200)
    checks = gpu_check(console, ["helper_tools"], {}, json_path=str(tmp_path / "report.json"))
    by_name = {c.name: c for c in checks}
    assert by_name["facts"].ok and by_name["preflight"].ok is not None
    assert by_name["check-mode run"].ok, by_name["check-mode run"].detail
    assert (tmp_path / "report.json").exists()
    assert "GPU check of this machine" in console.export_text()


def test_invoke_gpucheck_prints_the_report():
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-m", "invoke", "gpucheck", "--roles", "helper_tools"], cwd=PROJECT,
                          capture_output=True, text=True, env=env, timeout=300)
    assert "GPU check of this machine" in done.stdout and "check-mode run" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
