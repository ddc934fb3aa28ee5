import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from conftest import example_h, host_devices, random_model


def test_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 5, 3, 256)).astype(np.float32) * 3
  x = rng.integers(0, 256, size=(3, 4, 5, 3)).astype(np.uint8)
  shifted = logits - logits.max(-1, keepdims=True)
  logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  picked = np.take_along_axis(logp, x[..., None].astype(np.int64), -1)[..., 0]
  expected = -picked.sum((1, 2, 3)) / (4 * 5 * 3 * math.log(2))
  got = pj.bits_per_dim(jnp.asarray(logits), jnp.asarray(x))
  assert got.dtype == jnp.float32 and got.shape == (3,)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_gradient_is_softmax_minus_one_hot():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 4, 3, 256)).astype(np.float32) * 3
  x = rng.integers(0, 256, size=(2, 3, 4, 3)).astype(np.uint8)
  grad = jax.grad(lambda l: pj.bits_per_dim(l, jnp.asarray(x)).sum())(jnp.asarray(logits))
  softmax = np.exp(logits - logits.max(-1, keepdims=True))
  softmax /= softmax.sum(-1, keepdims=True)
  expected = (softmax - np.eye(256)[x]) / (3 * 4 * 3 * math.log(2))
  np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-9)


def test_large_and_ruled_out_logits_stay_exact():
  # The one-pass log-sum-exp rescales its partial sums as the max grows:
  # logits far from 0 must not overflow, and levels at -inf (ruled out, as a
  # mask would) must add nothing rather than nan, to the loss or its gradient.
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 3, 4, 3, 256)) * 5 + 1e4
  logits[..., ::2] = -np.inf
  x = rng.integers(0, 128, size=(2, 3, 4, 3)) * 2 + 1
  finite = logits[..., 1::2]
  lse = finite.max(-1) + np.log(np.exp(finite - finite.max(-1, keepdims=True)).sum(-1))
  picked = np.take_along_axis(logits, x[..., None], -1)[..., 0]
  expected = (lse - picked).mean((1, 2, 3)) / math.log(2)
  f = lambda l: pj.bits_per_dim(l, jnp.asarray(x, jnp.uint8))
  got = f(jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)
  grad = np.asarray(jax.grad(lambda l: f(l).sum())(jnp.asarray(logits, jnp.float32)))
  assert np.all(np.isfinite(grad)) and np.all(grad[..., ::2] == 0)


def test_uniform_logits_give_exactly_eight_bits():
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 8, 8, 3), 0, 256)
  bpd = pj.bits_per_dim(jnp.zeros((2, 8, 8, 3, 256)), x)
  assert np.all(np.asarray(bpd) == 8.0)


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="do not match"):
    pj.bits_per_dim(jnp.zeros((2, 8, 8, 3, 256)), jnp.zeros((2, 8, 8, 1), jnp.uint8))


@pytest.mark.parametrize("logits,x,message", [
    (jnp.zeros((1, 2, 2, 1, 256)), jnp.full((1, 2, 2, 1), 300), r"values must be in 0..255, got 300..300"),
    (jnp.zeros((1, 2, 2, 1, 256)), jnp.full((1, 2, 2, 1), -1), r"got -1..-1"),
    (jnp.zeros((1, 2, 2, 1, 256)), jnp.full((1, 2, 2, 1), 0.5), "not normalised floats"),
    (jnp.zeros((1, 2, 2, 1, 10)), jnp.zeros((1, 2, 2, 1), jnp.uint8), r"\[B, H, W, C, 256\]"),
    (jnp.zeros((1, 2, 2, 1, 256), jnp.int32), jnp.zeros((1, 2, 2, 1), jnp.uint8),
     "floating point"),
])
def test_values_outside_the_contract_are_refused(logits, x, message):
  with pytest.raises(ValueError, match=message):
    pj.bits_per_dim(logits, x)


def test_under_jit_the_values_cannot_be_checked_but_dtypes_are():
  f = jax.jit(pj.bits_per_dim)
  assert f(jnp.zeros((1, 2, 2, 1, 256)), jnp.zeros((1, 2, 2, 1), jnp.uint8))[0] == 8.0
  with pytest.raises(ValueError, match="not normalised floats"):
    f(jnp.zeros((1, 2, 2, 1, 256)), jnp.zeros((1, 2, 2, 1)))


@pytest.mark.parametrize("conditioning, batch_size", [("none", 2), ("class", 3), ("vector", 64)])
def test_image_bits_per_dim_is_the_models_in_batches(conditioning, batch_size):
  model, variables = random_model(3, 3, 2, False, conditioning, (4, 5))
  images = jax.random.randint(jax.random.PRNGKey(1), (7, 4, 5, 3), 0, 256).astype(jnp.uint8)
  h = example_h(model, 7)
  expected = pj.bits_per_dim(model.apply(variables, images, h=h), images)
  got = pj.image_bits_per_dim(model, variables, np.asarray(images, np.int64), h=h,
                              batch_size=batch_size)
  assert got.dtype == np.float32 and got.shape == (7,)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_image_bits_per_dim_compiles_once_for_every_batch():
  from pixelcnn_jax import evaluate
  model, variables = random_model(1, 3, 1, False, "none", (3, 3))
  images = np.zeros((5, 3, 3, 1), np.uint8)
  pj.image_bits_per_dim(model, variables, images[:4], batch_size=2)
  compiled = evaluate._batch_bits_per_dim._cache_size()
  pj.image_bits_per_dim(model, variables, images, batch_size=2)  # The last batch padded.
  assert evaluate._batch_bits_per_dim._cache_size() == compiled


@pytest.mark.parametrize("images, h, batch_size, message", [
    (np.zeros((2, 4, 5, 3), np.float32), [0, 1], 8, r"integers 0..255 \[N, H, W, 3\]"),
    (np.zeros((2, 4, 5, 1), np.uint8), [0, 1], 8, r"got uint8 \(2, 4, 5, 1\)"),
    (np.zeros((0, 4, 5, 3), np.uint8), [], 8, "N >= 1"),
    (np.full((2, 4, 5, 3), 256), [0, 1], 8, r"values must be in 0..255, got 256..256"),
    (np.zeros((2, 4, 5, 3), np.uint8), [0, 4], 8, r"h: label 4 is outside 0..3"),
    (np.zeros((2, 4, 5, 3), np.uint8), [0], 8, r"h must be integer class labels of shape \(2,\)"),
    (np.zeros((2, 4, 5, 3), np.uint8), None, 8, "pass h"),
    (np.zeros((2, 4, 5, 3), np.uint8), [0, 1], 0, "batch_size must be a positive integer"),
])
def test_image_bits_per_dim_refuses_bad_input_in_one_line(images, h, batch_size, message):
  model, variables = random_model(3, 3, 1, False, "class", (4, 5))
  with pytest.raises(ValueError, match=message) as e:
    pj.image_bits_per_dim(model, variables, images, h=h, batch_size=batch_size)
  assert "\n" not in str(e.value)


def test_image_bits_per_dim_of_an_auto_encoder_is_given_each_images_own_code():
  ae = pj.autoencoder.PixelCNNAutoEncoder(
      pj.autoencoder.Encoder(code_dim=4, features=4),
      pj.GatedPixelCNN(num_layers=1, features=6, channels=3, conditioning="vector",
                       cond_dim=4, image_size=(4, 4)))
  x = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
  variables = ae.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
  np.testing.assert_allclose(pj.image_bits_per_dim(ae, variables, x, batch_size=2),
                             pj.bits_per_dim(ae.apply(variables, x), x), rtol=1e-6)
  with pytest.raises(ValueError, match="an auto-encoder takes no h"):
    pj.image_bits_per_dim(ae, variables, x, h=np.zeros((3, 4), np.float32))
  with pytest.raises(ValueError, match="takes a GatedPixelCNN or a PixelCNNAutoEncoder, got "
                                       "Encoder"):
    pj.image_bits_per_dim(ae.encoder, {}, x)


def test_image_bits_per_dim_splits_each_batch_over_the_devices():
  """On a host with 3 devices: 5 images at batch 2 run as batches of 3 (a
  multiple of the devices), the last padded, and score what one device does."""
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh
      import pixelcnn_jax as pj
      assert jax.device_count() == 3
      model = pj.GatedPixelCNN(num_layers=2, features=6, kernel_size=3, channels=3,
                               conditioning="class", num_classes=4, image_size=(4, 5))
      x = np.random.default_rng(0).integers(0, 256, (5, 4, 5, 3), dtype=np.uint8)
      labels = np.array([0, 1, 2, 3, 1])
      variables = model.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]), h=labels[:1])
      three = pj.image_bits_per_dim(model, variables, x, h=labels, batch_size=2)
      one = pj.image_bits_per_dim(model, variables, x, h=labels, batch_size=2,
                                  mesh=Mesh(np.array(jax.devices()[:1]), ("data",)))
      assert three.shape == (5,), three.shape
      np.testing.assert_allclose(three, one, rtol=1e-6)
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                              XLA_FLAGS=host_devices(3)))
  assert done.returncode == 0, done.stderr[-3000:]
