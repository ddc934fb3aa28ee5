"""Shared helpers: small random models and the expected receptive field."""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

# One compilation cache for the whole run, set before jax is imported: the
# pytest process makes it, and its xdist workers and every CLI they start
# inherit it, so the same smoke model compiles once per run, not once per
# process. A size limit makes jax lock the cache for concurrent processes.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ.update(JAX_COMPILATION_CACHE_DIR=tempfile.mkdtemp(prefix="pixelcnn_jax_tests_"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                    JAX_COMPILATION_CACHE_MAX_SIZE=str(2**31))
  _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]
else:
  _OWN_CACHE = None
# The suite's models are tiny, so XLA:CPU's LLVM optimisations cost far more
# than they save: at level 0 a smoke config's train step compiles in 3 s
# instead of 13-16 s. Both sides of every comparison compile alike.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax.model import receptive_field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_sessionfinish(session):
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def random_model(channels=3, kernel=3, layers=2, skip=False, conditioning="none",
                 size=(6, 7), seed=0, features=0, **kw):
  """A tiny model with random weights *and* biases (zero biases hide paths)."""
  if conditioning in ("class", "spatial"):
    kw.setdefault("num_classes", 4)
  if conditioning == "vector":
    kw.setdefault("cond_dim", 5)
  model = pj.GatedPixelCNN(num_layers=layers, features=features or 6 * channels,
                           kernel_size=kernel, channels=channels, skip=skip,
                           conditioning=conditioning, spatial_features=4,
                           image_size=size, **kw)
  h = example_h(model, 1, seed)
  x = jnp.zeros((1, *size, channels), jnp.uint8)
  variables = model.init(jax.random.PRNGKey(seed), x, h=h)
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [a + 0.2 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
  return model, jax.tree_util.tree_unflatten(tree, leaves)


def example_h(model, batch, seed=0):
  if model.conditioning == "none":
    return None
  if model.num_classes > 0:
    return (jnp.arange(batch, dtype=jnp.int32) + seed) % model.num_classes
  return jax.random.normal(jax.random.PRNGKey(seed), (batch, model.cond_dim))


def expected_dependencies(height, width, channels, layers, kernel):
  """dep[i, j, c, i2, j2, c2]: output sub-pixel (i, j, c) may see input (i2, j2, c2)."""
  up, side = receptive_field(layers, kernel)
  i, j, c, i2, j2, c2 = np.meshgrid(*(np.arange(n) for n in
                                      (height, width, channels) * 2), indexing="ij")
  above = (i2 < i) & (i - i2 <= up) & (np.abs(j - j2) <= side)
  left = (i2 == i) & (j2 < j) & (j - j2 <= side)
  colour = (i2 == i) & (j2 == j) & (c2 < c)
  return above | left | colour


def load_config(name, arg=None):
  """get_config(arg) of configs/NAME, loaded by path as config_flags does."""
  spec = importlib.util.spec_from_file_location(name[:-3],
                                                os.path.join(REPO, "configs", name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def host_devices(n: int) -> str:
  """XLA_FLAGS for a subprocess with n CPU devices, keeping the suite's flags."""
  return f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={n}"


def run_cli(*args, cwd=REPO, timeout=300, env=None):
  """Runs `python -m pixelcnn_jax.main ARGS` and returns the CompletedProcess."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
  return subprocess.run([sys.executable, "-m", "pixelcnn_jax.main", *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
  return run_cli


def one_line_error(result, match):
  """A refused run: non-zero exit, and stderr is exactly one `error:` line."""
  assert result.returncode != 0, result.stdout[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith("error: ") and match in lines[0], lines[0]
