"""The XLA flags that the entry points set: appended once, a user's own
setting wins, and set before JAX starts its backend."""

import os
import subprocess
import sys

import pytest

from pixelcnn_jax import xla_defaults
from conftest import REPO


def test_apply_appends_the_defaults_once_after_the_users_flags():
  env = {"XLA_FLAGS": "--xla_dump_to=/tmp/hlo"}
  expected = " ".join(("--xla_dump_to=/tmp/hlo", *xla_defaults.DEFAULTS))
  assert xla_defaults.apply(env) == expected
  assert xla_defaults.apply(env) == expected
  assert xla_defaults.apply({}) == " ".join(xla_defaults.DEFAULTS)


@pytest.mark.parametrize("own", ["--xla_gpu_enable_triton_gemm=true",
                                 "--xla_gpu_enable_triton_gemm"])
def test_a_users_own_setting_of_a_default_flag_wins(own):
  env = {"XLA_FLAGS": own}
  assert xla_defaults.apply(env) == own


# main() with a stand-in for the train mode that reports the devices JAX
# started with, and a default that XLA only honours at start-up.
MAIN_WITH_PROBE = """
import jax
from absl import app
from pixelcnn_jax import main, xla_defaults
xla_defaults.DEFAULTS = ("--xla_force_host_platform_device_count=3",)
main.MODES["train"] = lambda config, workdir: print("devices", jax.local_device_count())
app.run(main.main, flags_parser=main.parse_flags)
"""


def test_main_sets_them_before_jax_starts_its_backend(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", MAIN_WITH_PROBE, "--config=configs/default.py",
                      f"--workdir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.split() == ["devices", "3"]
