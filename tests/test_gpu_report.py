"""benchmarks/gpu_report.py's plan, run end to end on the CPU in its dry mode: every step runs,
prints its lines after the seconds since the report started, and writes its record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.e2e


def test_the_gpu_report_runs_its_whole_plan_dry_on_the_cpu(tmp_path, shakespeare_path):
    records, log = tmp_path / "records", tmp_path / "report.log"
    project_records = sorted((ROOT / "records").glob("*.json"))
    argv = [sys.executable, "benchmarks/gpu_report.py", "--dry", "--log", str(log)]
    env = {**os.environ, "CHARGPT_RECORDS_DIR": str(records), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*argv, "--data_path", str(shakespeare_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert all(re.match(r"^ *\d+\.\d s \| ", line) for line in lines), lines[:5]
    assert log.read_text().splitlines() == lines  # the log holds every line too
    assert "dry run: the plan on the CPU" in lines[0]  # said first, and last
    titles = [line.split("=== ")[1] for line in lines if "| === " in line]
    assert titles[:-1] == [
        "CUDA tests", "tiny.yaml to target", "evaluation cost", "training step, eager", "sampling",
        "a sweep stacked",
    ]  # fmt: skip
    assert titles[-1].startswith("done: 0 of the steps failed; dry run: the plan on the CPU")
    assert any("iter 6: train loss" in line for line in lines)  # the evaluations, as they came
    written = {json.loads(p.read_text())["benchmark"] for p in records.glob("*.json")}
    assert written == {
        "time_to_loss", "evaluation_cost", "train_speed", "sample_speed", "sweep_speed"
    }  # fmt: skip
    assert sorted((ROOT / "records").glob("*.json")) == project_records  # a dry run's kept apart
