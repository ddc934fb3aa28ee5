"""The cached sampler's kernels: the fused Pallas colour pass, the earlier
groups' kernel, the column loop's unrolling, and how `kernel="auto"` picks
among them and falls back."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import cached_loop
from conftest import REPO, example_h, random_model


@pytest.mark.parametrize("kernel", ["xla", "pallas"])
def test_cached_bf16_draws_mostly_agree_with_the_reference(kernel):
  model, variables = random_model(3, 3, 4, False, "none", (6, 6), dtype=jnp.bfloat16)
  key = jax.random.PRNGKey(0)
  cached = pj.sample(model, variables, key, 8, kernel=kernel)
  redrawn = pj.sampling.redraw(model, variables, key, cached)
  assert (redrawn != cached).mean() < 0.02


@pytest.mark.parametrize("channels,kernel,layers,conditioning,size,head", [
    (1, 3, 1, "none", (5, 6), 0),
    (3, 3, 2, "none", (4, 5), 0),
    (3, 5, 2, "class", (4, 5), 12),
    (1, 3, 2, "vector", (5, 5), 0),
    (3, 5, 1, "spatial", (5, 6), 0),
])
def test_fused_pallas_pass_matches_naive_bit_for_bit(channels, kernel, layers,
                                                    conditioning, size, head):
  """The fused colour pass (Pallas; its interpreter on CPU) draws what the
  naive sampler draws, in float32."""
  model, variables = random_model(channels, kernel, layers, False, conditioning, size,
                                  head_features=head)
  h = example_h(model, 3)
  key = jax.random.PRNGKey(42)
  naive = pj.sample(model, variables, key, 3, h=h, method="naive")
  np.testing.assert_array_equal(pj.sample(model, variables, key, 3, h=h, kernel="pallas"),
                                naive)


@pytest.mark.parametrize("temperature, shared", [(0.7, False), (1.0, True)])
def test_fused_pallas_draw_keeps_prefix_temperature_and_shared_noise(temperature, shared):
  """The fused kernel makes the draw itself: a prefix that ends inside a
  pixel, 1 / T and shared noise reach it as they reach the naive sampler's."""
  model, variables = random_model(3, 3, 2, False, "none", (3, 4))
  images = np.random.default_rng(0).integers(0, 256, (3, 3, 4, 3), dtype=np.uint8)
  n = 4 * 3 + 4  # A row, a pixel and one colour of the next.
  kw = dict(prefix=(images, n), temperature=temperature, shared_noise=shared)
  key = jax.random.PRNGKey(2)
  fused = pj.sample(model, variables, key, 3, kernel="pallas", **kw)
  np.testing.assert_array_equal(fused, pj.sample(model, variables, key, 3, method="naive",
                                                 **kw))
  np.testing.assert_array_equal(fused.reshape(3, -1)[:, :n], images.reshape(3, -1)[:, :n])
  assert (fused.reshape(3, -1)[:, n:] != images.reshape(3, -1)[:, n:]).any()


def test_the_fused_kernel_takes_only_the_samplers_draw():
  model, variables = random_model(1, 3, 1, False, "none", (2, 2))
  canvas = jnp.zeros((1, 2, 2, 1), jnp.uint8)
  with pytest.raises(ValueError, match="choose must be a GumbelDraw"):
    cached_loop.cached_loop(model, variables, canvas, None, lambda *a: a[2],
                            kernel="pallas_interpret")


@pytest.mark.parametrize("features, dtype, precision, earlier", [
    (24, jnp.bfloat16, None, False), (384, jnp.bfloat16, None, True),
    (24, jnp.float32, "highest", True), (24, jnp.bfloat16, None, True),
    (384, jnp.float32, "highest", True)])
def test_fused_kernel_lowers_to_triton_for_a_gpu_on_this_host(monkeypatch, features, dtype,
                                                               precision, earlier):
  """The fused colour pass, and the earlier groups' kernel between passes,
  go through Pallas's Triton lowering, with the narrow and the wide settings
  (fused_pass.settings), without a GPU: jax's export lowers for CUDA here.
  The interpreter the other tests use checks the arithmetic, not what
  Triton accepts."""
  monkeypatch.setattr(pj.fused_pass, "EARLIER_OVERRIDE", earlier)
  model = pj.GatedPixelCNN(num_layers=2, features=features, channels=3, image_size=(4, 4),
                           dtype=dtype, precision=precision)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 4, 4, 3), jnp.uint8))
  body = lambda v, key, canvas, n, t: pj.sampling._cached_body(
      model, v, key, canvas, None, n, t, False, "pallas", None)
  triton = "__gpu$xla.gpu.triton"
  exported = jax.export.export(
      jax.jit(body), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(triton)])(
          variables, jax.ShapeDtypeStruct((2,), jnp.uint32),
          jax.ShapeDtypeStruct((3, 4, 4, 3), jnp.uint8),
          jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
  module = exported.mlir_module()
  # A kernel per colour, and one before each colour but the first.
  assert module.count(f"stablehlo.custom_call @{triton}") == (5 if earlier else 3)
  stages, _, warps = pj.fused_pass.settings(model)
  assert module.count(f"num_warps = {warps or 4} : i32") == (5 if earlier else 3)
  assert module.count(f"num_stages = {stages or 3} : i32") == (5 if earlier else 3)


@pytest.mark.parametrize("dtype, precision", [(jnp.bfloat16, None), (jnp.float32, "highest")])
def test_earlier_groups_kernel_changes_no_draw(monkeypatch, dtype, precision):
  """Passes > 0 taking the dots from earlier colour groups from their own
  kernel (earlier_groups.py) make the same sums, term for term, as passes
  making them in their loop: the same bytes in bf16 too, where a changed
  order of sums would show, with a batch padded to its block."""
  model = pj.GatedPixelCNN(num_layers=3, features=48, channels=3, image_size=(2, 3),
                           dtype=dtype, precision=precision)
  variables = model.init(jax.random.PRNGKey(5), jnp.zeros((1, 2, 3, 3), jnp.uint8))
  key = jax.random.PRNGKey(9)
  images = {}
  for earlier in (True, False):
    monkeypatch.setattr(pj.fused_pass, "EARLIER_OVERRIDE", earlier)
    jax.clear_caches()  # The loop's jit cache does not key on the choice.
    images[earlier] = pj.sample(model, variables, key, 3, kernel="pallas")
  jax.clear_caches()
  np.testing.assert_array_equal(images[True], images[False])
  assert len(np.unique(images[True])) > 3


def test_only_wide_models_take_the_earlier_groups_kernel_by_default():
  narrow, wide = (pj.GatedPixelCNN(num_layers=2, features=f, channels=3, image_size=(4, 4),
                                   dtype=jnp.bfloat16) for f in (132, 384))
  assert not pj.fused_pass.earlier_kernel(narrow)
  assert pj.fused_pass.earlier_kernel(wide)


def test_unrolled_column_loop_draws_what_the_naive_sampler_draws(monkeypatch):
  """Several columns per loop iteration (cached_loop.COLUMN_UNROLL), 2 into a
  row of 5 leaving a remainder, change no draw, in float32. The loop is the
  same for both kernels; XLA's ops keep the test fast."""
  model, variables = random_model(3, 3, 2, False, "none", (3, 5))
  key = jax.random.PRNGKey(7)
  naive = pj.sample(model, variables, key, 2, method="naive")
  monkeypatch.setattr("pixelcnn_jax.cached_loop.COLUMN_UNROLL", 2)
  jax.clear_caches()  # The loop's jit cache does not key on the setting.
  try:
    np.testing.assert_array_equal(pj.sample(model, variables, key, 2, kernel="xla"), naive)
  finally:
    jax.clear_caches()


@pytest.mark.parametrize("script, flag, error", [
    *[("bench_sample.py", flag, error) for flag, error in [
        ("--unroll=4,0", "--unroll: comma-separated integers >= 1 or auto, got '4,0'"),
        ("--earlier=on,yes", "--earlier: comma-separated auto, on or off, got 'on,yes'"),
        ("--aligns=8,-1", "--aligns: comma-separated integers >= 0, got '8,-1'"),
        ("--fused=auto,3x", "--fused: comma-separated auto or STAGESxBLOCK[xWARPS], e.g. "
         "defaultx64 or 1x8x16, got 'auto,3x'"),
        ("--batches=16,a", "--batches: comma-separated integers >= 1, got '16,a'"),
        ("--kernels=xla,cuda",
         "--kernels: comma-separated of auto, xla, pallas, got 'xla,cuda'"),
        ("--command_buffers=yes", "--command_buffers: comma-separated on or off, got 'yes'"),
        ("--conv_fusion=on,1", "--conv_fusion: comma-separated auto, on or off, got 'on,1'"),
        ("--shapes=15x132", "--shapes: comma-separated LAYERSxFEATURESkKERNEL, e.g. "
         "15x132k3, got '15x132'"),
        ("--agreement_shape=15x132k3,4x8k3", "--agreement_shape: LAYERSxFEATURESkKERNEL, "
         "e.g. 15x132k3, got '15x132k3,4x8k3'"),
        ("--agreement_dtypes=float16", "--agreement_dtypes: comma-separated "
         "DTYPE[:PRECISION] with float32 or bfloat16 and default, high or highest, "
         "got 'float16'"),
        ("--dtypes=bfloat16,float32:fast", "--dtypes: comma-separated DTYPE[:PRECISION] "
         "with float32 or bfloat16 and default, high or highest, got 'bfloat16,float32:fast'")]],
    ("fused_smem.py", "--blocks=0", "--blocks: comma-separated integers >= 1, got '0'"),
    ("fused_smem.py", "--stages=auto,0",
     "--stages: comma-separated integers >= 1 or auto, got 'auto,0'"),
    ("fused_smem.py", "--dtypes=float16",
     "--dtypes: comma-separated bfloat16 or float32, got 'float16'")])
def test_sampler_experiments_refuse_a_bad_choice(script, flag, error):
  r = subprocess.run([sys.executable, os.path.join(REPO, "experiments", script), flag],
                     capture_output=True, text=True, timeout=120)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines() == [error]


def test_the_column_loop_is_unrolled_by_default_only_on_gpus(monkeypatch):
  assert cached_loop.column_unroll() == 1
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert cached_loop.column_unroll() == cached_loop.GPU_COLUMN_UNROLL > 1
  monkeypatch.setattr(cached_loop, "COLUMN_UNROLL", 2)
  assert cached_loop.column_unroll() == 2


@pytest.mark.parametrize("override, num, size", [(None, 70, (2, 3)), ((1, 32, None), 11, (2, 2))])
def test_fused_pallas_pass_splits_large_batches_into_blocks(monkeypatch, override, num, size):
  """The library's 8-image blocks, and a 16-image block at one pipelining
  stage, padded where the batch does not fill them."""
  monkeypatch.setattr(pj.fused_pass, "OVERRIDE", override)
  model, variables = random_model(3, 3, 1, False, "none", size)
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(pj.sample(model, variables, key, num, kernel="pallas"),
                                pj.sample(model, variables, key, num, kernel="xla"))


def test_fused_kernel_settings_by_the_bytes_of_a_group():
  model = lambda features, dtype: pj.GatedPixelCNN(num_layers=15, features=features,
                                                   channels=3, dtype=dtype)
  narrow, wide = model(132, jnp.bfloat16), model(384, jnp.bfloat16)
  assert (pj.fused_pass.group_width(narrow), pj.fused_pass.group_width(wide)) == (64, 128)
  assert pj.fused_pass.settings(narrow) == (None, 8, None)
  assert pj.fused_pass.settings(wide) == (None, 8, 8)
  assert pj.fused_pass.settings(model(132, jnp.float32)) == (None, 8, 8)
  assert pj.fused_pass.settings(model(96, jnp.float32)) == (None, 8, None)
  # 512 bytes a row: 3 stages do not fit a GPU block's shared memory.
  assert pj.fused_pass.settings(model(384, jnp.float32)) == (1, 8, 8)


def test_fused_pallas_pass_refuses_skip_connections():
  model, variables = random_model(3, 3, 1, True, "none", (4, 4))
  with pytest.raises(ValueError, match="does not support skip connections"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 2, kernel="pallas")


SHARED_MEMORY_FULL = jax.errors.JaxRuntimeError(
    "RESOURCE_EXHAUSTED: Shared memory size limit exceeded: requested 413696")


def _fake_gpu(monkeypatch, fail_with=None, interpret=True, fits=0, blocks=None):
  """sample() as on a GPU whose fused kernel raises `fail_with` at blocks of
  more than `fits` images (or runs through the interpreter, or as XLA's ops
  unless `interpret`); returns the kernels it was asked for, and appends
  each fused call's block to `blocks`."""
  asked, real_loop = [], pj.sampling._cached_loop

  def loop(*loop_args):
    real = real_loop(*loop_args)

    def cached(*args):
      kernel, block = args[-2:]
      asked.append(kernel)
      if kernel == "pallas":
        if blocks is not None:
          blocks.append(block)
        if fail_with is not None and block > fits:
          raise fail_with
        return real(*args[:-2], "pallas_interpret" if interpret else "xla", block)
      return real(*args)

    return cached

  monkeypatch.setattr(pj.sampling, "_cached_loop", loop)
  monkeypatch.setattr(pj.sampling, "_FUSED_CAP", {})
  monkeypatch.setattr(pj.sampling.jax, "default_backend", lambda: "gpu")
  return asked


def test_auto_kernel_is_fused_on_one_gpu_for_small_batches_only(monkeypatch):
  model, variables = random_model(3, 3, 1, False, "none", (2, 3))
  key = jax.random.PRNGKey(0)
  reference = pj.sample(model, variables, key, 3, kernel="xla")
  asked = _fake_gpu(monkeypatch)
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  np.testing.assert_array_equal(pj.sample(model, variables, key, 3, mesh=one_device),
                                reference)
  pj.sample(model, variables, key, pj.sampling.FUSED_MAX_BATCH + 1, mesh=one_device)
  skip_model, skip_variables = random_model(3, 3, 1, True, "none", (2, 3))
  pj.sample(skip_model, skip_variables, key, 2, mesh=one_device)
  assert asked == ["pallas", "xla", "xla"]


def test_auto_kernel_is_fused_for_wide_models_at_every_batch(monkeypatch):
  model = pj.GatedPixelCNN(num_layers=1, features=3 * 65, kernel_size=3, channels=3,
                           image_size=(1, 2))
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 2, 3), jnp.uint8))
  asked = _fake_gpu(monkeypatch, interpret=False)
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  key = jax.random.PRNGKey(0)
  for num in (1, pj.sampling.FUSED_MAX_BATCH + 1):
    pj.sample(model, variables, key, num, mesh=one_device)
  assert asked == ["pallas", "pallas"]


def test_auto_kernel_falls_back_to_xla_where_the_fused_kernel_does_not_fit(
    monkeypatch, caplog):
  model, variables = random_model(3, 3, 1, False, "none", (2, 3))
  key = jax.random.PRNGKey(0)
  reference = pj.sample(model, variables, key, 2, kernel="xla")
  blocks = []
  asked = _fake_gpu(monkeypatch, SHARED_MEMORY_FULL, blocks=blocks)
  np.testing.assert_array_equal(pj.sample(model, variables, key, 2), reference)
  assert "does not fit this GPU" in caplog.text
  pj.sample(model, variables, key, 20)
  assert blocks == [8, 4]  # Halved once; the second call, at another batch, remembers.
  assert asked == ["pallas", "pallas", "xla", "xla"]
  with pytest.raises(ValueError, match="^kernel='pallas': the fused sampling kernel does "
                     "not fit this GPU's shared memory for this model"):
    pj.sample(model, variables, key, 2, kernel="pallas")


def test_fused_kernel_halves_its_block_until_it_fits(monkeypatch, caplog):
  """A block's shared memory grows with its images: 64 did not fit a 15 x 132
  model on an H200 (experiments/RESULTS.md), 32 did; a card with less may
  not fit the library's 8. Each block draws the same images."""
  model, variables = random_model(3, 3, 1, False, "none", (2, 3))
  key = jax.random.PRNGKey(0)
  one_device = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  reference = pj.sample(model, variables, key, 40, kernel="xla")
  blocks = []
  _fake_gpu(monkeypatch, SHARED_MEMORY_FULL, fits=4, blocks=blocks)
  assert pj.sampling.fused_block(model, 40) == pj.sampling.fused_block(model) == 8
  for kernel in ("pallas", "auto"):
    np.testing.assert_array_equal(
        pj.sample(model, variables, key, 40, kernel=kernel, mesh=one_device), reference)
  assert blocks == [8, 4, 4]
  assert "at 8 images a block" in caplog.text and "trying 4" in caplog.text
  assert pj.sampling.fused_block(model) == pj.sampling.fused_block(model, 3) == 4


def test_fused_kernel_keeps_an_overridden_block(monkeypatch):
  """bench_sample.py times the block it asks for, or reports that it failed."""
  model, variables = random_model(3, 3, 1, False, "none", (2, 3))
  monkeypatch.setattr(pj.fused_pass, "OVERRIDE", (None, 32, None))
  blocks = []
  _fake_gpu(monkeypatch, SHARED_MEMORY_FULL, fits=16, blocks=blocks)
  with pytest.raises(ValueError, match="requested 413696"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 40, kernel="pallas")
  assert blocks == [32]


def test_auto_kernel_does_not_hide_other_errors(monkeypatch):
  model, variables = random_model(3, 3, 1, False, "none", (2, 3))
  _fake_gpu(monkeypatch, jax.errors.JaxRuntimeError("INTERNAL: something else"))
  with pytest.raises(jax.errors.JaxRuntimeError, match="something else"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 2)
