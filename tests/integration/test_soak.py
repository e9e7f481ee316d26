"""The short soak of ``make test``: ``make bench-soak``'s run (tests/benchmarks/bench_soak.py), for 30 s.

16 boto3 callers saturate DetectCustomLabels on two running versions while an
import, a training (10 s budget) and a start/stop cycle loop beside them; at
the end no 5xx, no failed call, every activity cycled, the state consistent,
and no process's open file descriptors grew after the first 10 s.
"""
from __future__ import annotations

import pytest

from tests.benchmarks.bench_soak import soak

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_thirty_seconds_of_saturating_load_beside_imports_training_and_start_stop(tmp_path):
    report = soak(minutes=0.5, clients=16, training_budget=10, warmup=10, data_dir=tmp_path)
    assert not report.problems, "\n".join(report.lines())
    assert all(cycles >= 1 for cycles in report.activities.values()), report.activities
    assert report.totals["answered"] >= 100, report.totals
    assert report.growth and all(row["fd_growth"] <= 8 for row in report.growth), report.growth
