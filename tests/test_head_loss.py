"""head_loss: the kernel (in Pallas's interpreter here) against XLA's head and
likelihood, where it runs, and split over devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from pixelcnn_jax import head_loss
from conftest import host_devices


def _operands(batch, size, colours, features, depth, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((batch, size, size, depth), np.float32)
  x[..., :features] = np.maximum(rng.normal(0, 1, (batch, size, size, features)), 0)
  w = np.zeros((depth, colours * 256), np.float32)
  w[:features] = rng.normal(0, 1, (features, colours * 256))
  return (jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16),
          jnp.asarray(rng.normal(0, 1, colours * 256), jnp.float32),
          jnp.asarray(rng.integers(0, 256, (batch, size, size, colours)), jnp.uint8))


def _bits_and_grads(ops, features, weights):
  def loss(x, w, b):
    return jnp.sum(weights * head_loss.image_bits(x, w, b, ops[3], features))
  bits = jax.jit(lambda x, w, b: head_loss.image_bits(x, w, b, ops[3], features))(*ops[:3])
  return bits, jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*ops[:3])


def _uses_kernel(ops, features) -> bool:
  jaxpr = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(head_loss.image_bits(
      x, *ops[1:3], ops[3], features))))(ops[0])
  return "pallas_call" in str(jaxpr)


@pytest.fixture
def kernels_on_cpu(monkeypatch):
  monkeypatch.setattr(head_loss, "BACKENDS", ("cpu",))


# A ones channel in the padding (the bias's gradient from the weights'), none
# (a pass of its own), one colour, and a depth of two chunks (32 + 16); a
# program a block, and fewer programs than blocks: one colour's 3 over its 4
# blocks of 32 rows (the last step redoes a block), and one a colour.
@pytest.mark.parametrize("colours, features, depth, programs", [
    (3, 40, 64, head_loss.PROGRAMS), (3, 64, 64, head_loss.PROGRAMS), (1, 20, 32, 3),
    (3, 48, 48, 3)])
def test_kernel_gives_xlas_bits_and_gradients(kernels_on_cpu, monkeypatch, colours, features,
                                              depth, programs):
  monkeypatch.setattr(head_loss, "PROGRAMS", programs)
  ops = _operands(2, 8, colours, features, depth)
  weights = jnp.asarray([1.0, -2.0])
  assert _uses_kernel(ops, features)
  bits, grads = _bits_and_grads(ops, features, weights)
  with pytest.MonkeyPatch.context() as m:
    m.setattr(head_loss, "BACKENDS", ())
    assert not _uses_kernel(ops, features)
    ref_bits, ref_grads = _bits_and_grads(ops, features, weights)
  np.testing.assert_allclose(bits, ref_bits, rtol=1e-6)
  # The weights' padding rows are the model's to drop: the kernel's hold the
  # bias's gradient in one of them.
  for got, want in zip((grads[0], grads[1][:features], grads[2]),
                       (ref_grads[0], ref_grads[1][:features], ref_grads[2])):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    # Both round to bf16, at different points: within a few of its steps.
    np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())
    assert np.abs(want).max() > 0


def test_kernel_runs_only_where_it_fits_and_pays(kernels_on_cpu):
  ops = _operands(2, 8, 3, 40, 64)
  assert _uses_kernel(ops, 40)
  assert not _uses_kernel((ops[0].astype(jnp.float32), ops[1].astype(jnp.float32),
                           *ops[2:]), 40)  # float32 keeps XLA's matmuls
  odd = _operands(1, 6, 3, 40, 64)  # 36 rows: no whole block
  assert not _uses_kernel(odd, 40)
  assert not head_loss.kernel_fits(128, 40, jnp.bfloat16)  # a depth of 8-wide chunks
  wide = _operands(1, 8, 1, 300, head_loss.MAX_DEPTH + 64)
  assert not _uses_kernel(wide, 300)
  assert head_loss._chunks(160) == ((0, 128), (128, 32))
  assert head_loss._chunks(48) == ((0, 32), (32, 16))


@pytest.mark.parametrize("dtype, align", [(jnp.float32, 1), (jnp.bfloat16, 16)])
def test_models_bits_per_dim_is_likelihoods_of_its_logits(dtype, align):
  """Off the kernel's backends, exactly: the same ops in the same order."""
  model = pj.GatedPixelCNN(num_layers=2, features=12, channels=3, image_size=(4, 4),
                           dtype=dtype, channel_align=align, conditioning="class",
                           num_classes=3)
  x = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
  h = np.array([0, 2])
  variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x), h=h)
  np.testing.assert_array_equal(model.apply(variables, x, h=h, method="bits_per_dim"),
                                pj.bits_per_dim(model.apply(variables, x, h=h), x))


def test_models_bits_per_dim_through_the_kernel(kernels_on_cpu):
  model = pj.GatedPixelCNN(num_layers=2, features=24, channels=3, image_size=(8, 8),
                           dtype=jnp.bfloat16, channel_align=16)
  x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
  variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
  np.testing.assert_allclose(model.apply(variables, x, method="bits_per_dim"),
                             pj.bits_per_dim(model.apply(variables, x), x), rtol=1e-6)


def test_kernel_keeps_rows_split_over_devices():
  """On 4 devices (data 2 x fsdp 2), the weights split too: each device runs
  the kernel on its own rows, which are never gathered, and the bits and
  gradients are one device's; also where a device's rows are not whole
  blocks (XLA's ops there)."""
  code = textwrap.dedent("""
      import re
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      from pixelcnn_jax import head_loss, mesh as mesh_lib
      from test_head_loss import _operands
      head_loss.BACKENDS = ("cpu",)
      mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2})
      rows = NamedSharding(mesh, P(("data", "fsdp")))
      def loss(x, w, b, t):
        return jnp.mean(head_loss.image_bits(x, w, b, t, 40))
      step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), in_shardings=(
          rows, NamedSharding(mesh, P("fsdp")), NamedSharding(mesh, P()), rows))
      for size in (8, 4):  # 64 rows a device, then 16
        ops = _operands(4, size, 3, 40, 48)
        hlo = step.lower(*ops).compile().as_text()
        assert "CustomSPMDPartitioning" not in hlo
        gathered = re.findall(r"= \\w+(\\[[\\d,]*\\])\\S* all-gather\\(", hlo)
        whole = (f"[{4 * size * size},", f"[4,{size},{size}")
        assert gathered and not any(g.startswith(whole) for g in gathered), gathered
        split = step(*ops)
        one = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
            *[jax.device_put(a, jax.devices()[0]) for a in ops])
        for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(one)):
          # The weights' gradient is summed over devices before its bf16 rounding.
          a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
          np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-2 * np.abs(b).max())
      print("ok")
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, cwd=os.path.dirname(__file__),
                        env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=host_devices(4)))
  assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_models_bits_per_dim_initialises_the_same_parameters():
  model = pj.GatedPixelCNN(num_layers=2, features=12, channels=3, image_size=(4, 4))
  x = jnp.zeros((1, 4, 4, 3), jnp.uint8)
  by_method = model.init(jax.random.PRNGKey(0), x, method="bits_per_dim")
  by_call = model.init(jax.random.PRNGKey(0), x)
  assert jax.tree.structure(by_method) == jax.tree.structure(by_call)
  for a, b in zip(jax.tree.leaves(by_method), jax.tree.leaves(by_call)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("images, message", [
    (np.full((1, 4, 4, 3), 128.0, np.float32), "images must be integers 0..255"),
    (np.full((1, 4, 4, 3), 256, np.int32), r"image values must be in 0..255, got 256..256"),
])
def test_models_bits_per_dim_refuses_bad_images_in_one_line(images, message):
  model = pj.GatedPixelCNN(num_layers=1, features=6, channels=3, image_size=(4, 4))
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 3), jnp.uint8))
  with pytest.raises(ValueError, match=message):
    model.apply(variables, images, method="bits_per_dim")
