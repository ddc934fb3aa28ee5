"""The benchmark scripts of experiments/ that back the performance claims:
they run end to end at a tiny size, and refuse bad arguments in one line."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

BENCH_MAIN = os.path.join(REPO, "experiments", "bench_main.py")


def _bench_main(*args, timeout=300):
  return subprocess.run([sys.executable, BENCH_MAIN, *args], capture_output=True,
                        text=True, timeout=timeout)


def test_bench_main_times_main_py_and_the_bare_step(tmp_path):
  out = tmp_path / "row.jsonl"
  r = _bench_main("--shape=2x12k3", "--batch=8", "--steps=8", "--log_every=2",
                  "--bench_steps=2", f"--out={out}")
  assert r.returncode == 0, r.stderr[-2000:]
  row = json.loads(out.read_text())
  assert row["main_windows"] == 2  # Steps 6 and 8: the first two windows are left out.
  assert row["bench_img_per_s"] > 0 and row["main_img_per_s"] > 0
  assert row["main_over_bench"] == pytest.approx(row["main_img_per_s"] / row["bench_img_per_s"])


@pytest.mark.parametrize("args, error", [
    (["--shape=15x132"], "--shape: LAYERSxFEATURESkKERNEL, e.g. 15x132k3, got '15x132'"),
    (["--steps=100", "--log_every=50"],
     "--steps=100 leaves no logged window after the first two (--log_every=50): "
     "give at least 150"),
])
def test_bench_main_refuses_bad_arguments_in_one_line(args, error):
  r = _bench_main(*args, timeout=120)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines() == [error]
