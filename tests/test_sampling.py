import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj
from conftest import example_h, host_devices, random_model, run_cli

CASES = [  # channels, kernel, layers, skip, conditioning, (H, W)
    (1, 3, 1, False, "none", (5, 6)),
    (1, 5, 3, True, "none", (6, 5)),
    (3, 3, 2, False, "none", (4, 5)),
    (3, 5, 2, True, "none", (5, 4)),
    (3, 3, 4, False, "none", (4, 4)),
    (3, 3, 2, True, "class", (4, 5)),
    (1, 3, 2, False, "vector", (5, 5)),
    (3, 5, 1, False, "spatial", (5, 6)),
]


@pytest.mark.parametrize("channels,kernel,layers,skip,conditioning,size", CASES)
def test_cached_matches_naive_bit_for_bit(channels, kernel, layers, skip,
                                          conditioning, size):
  model, variables = random_model(channels, kernel, layers, skip, conditioning, size)
  h = example_h(model, 3)
  key = jax.random.PRNGKey(42)
  naive = pj.sample(model, variables, key, 3, h=h, method="naive")
  cached = pj.sample(model, variables, key, 3, h=h, method="cached")
  assert naive.dtype == np.uint8 and naive.shape == (3, *size, channels)
  np.testing.assert_array_equal(cached, naive)
  assert len(np.unique(cached)) > 10  # A real draw, not a constant canvas.
  # One forward pass over the finished images re-creates every draw.
  np.testing.assert_array_equal(pj.sampling.redraw(model, variables, key, naive, h=h),
                                naive)
  other = pj.sampling.redraw(model, variables, jax.random.PRNGKey(7), naive, h=h)
  assert (other != naive).mean() > 0.5


def test_prefix_pair_may_be_a_list():
  model, variables = random_model(1, 3, 1, False, "none", (4, 4))
  key = jax.random.PRNGKey(1)
  images = np.asarray(jax.random.randint(key, (2, 4, 4, 1), 0, 256), np.uint8)
  as_tuple = pj.sample(model, variables, key, 2, prefix=(images, 5))
  np.testing.assert_array_equal(pj.sample(model, variables, key, 2, prefix=[images, 5]),
                                as_tuple)
  assert (as_tuple.reshape(2, -1)[:, :5] == images.reshape(2, -1)[:, :5]).all()


def test_channel_align_leaves_the_draws_unchanged():
  model, variables = random_model(3, 3, 2, True, "class", (4, 4))
  key, h = jax.random.PRNGKey(3), example_h(model, 2)
  plain = pj.sample(model, variables, key, 2, h=h, method="naive")
  for method in ("naive", "cached"):
    np.testing.assert_array_equal(
        pj.sample(model.clone(channel_align=8), variables, key, 2, h=h, method=method),
        plain)


def test_command_buffers_leave_the_draws_unchanged():
  """The GPU's compiler options are accepted everywhere and change no draw."""
  model, variables = random_model(3, 3, 2, False, "none", (4, 4))
  key = jax.random.PRNGKey(4)
  np.testing.assert_array_equal(
      pj.sample(model, variables, key, 2, command_buffers=True),
      pj.sample(model, variables, key, 2, command_buffers=False))


def test_conv_fusion_is_taken_on_gpus_by_small_bf16_batches_and_keeps_the_draws(monkeypatch):
  """Forced onto this backend, the option must still compile, and off a GPU
  it changes nothing."""
  key = jax.random.PRNGKey(4)
  monkeypatch.setattr(pj.sampling, "CONV_FUSION_MAX_BATCH", 2)
  fusion_loop = pj.sampling._cached_with(tuple(pj.sampling.CONV_FUSION_OPTIONS.items()))
  bf16, _ = random_model(3, 3, 2, False, "none", (4, 4), dtype=jnp.bfloat16)
  assert not pj.sampling._conv_fusion(bf16, 1)  # Not a GPU.
  monkeypatch.setattr(pj.sampling, "CONV_FUSION_BACKENDS", (jax.default_backend(),))
  for dtype, num, fused in ((jnp.float32, 2, False), (jnp.bfloat16, 3, False),
                            (jnp.bfloat16, 2, True)):
    model, variables = random_model(3, 3, 2, False, "none", (4, 4), dtype=dtype)
    before = fusion_loop._cache_size()
    drawn = pj.sample(model, variables, key, num, kernel="xla")
    assert (fusion_loop._cache_size() > before) == fused
    monkeypatch.setattr(pj.sampling, "CONV_FUSION_MAX_BATCH", 0)
    np.testing.assert_array_equal(pj.sample(model, variables, key, num, kernel="xla"), drawn)
    monkeypatch.setattr(pj.sampling, "CONV_FUSION_MAX_BATCH", 2)


def test_samplers_ignore_dropout():
  model, variables = random_model(3, 3, 2, True, "none", (4, 4), dropout=0.5)
  key = jax.random.PRNGKey(5)
  plain = pj.sample(model.clone(dropout=0.0), variables, key, 2, method="naive")
  for method in ("naive", "cached"):
    np.testing.assert_array_equal(pj.sample(model, variables, key, 2, method=method),
                                  plain)


@pytest.mark.parametrize("layers,kernel,conditioning,head", [(15, 3, "none", 0),
                                                             (20, 5, "class", 12)])
def test_deep_cached_sampler_draws_what_the_reference_draws(layers, kernel,
                                                            conditioning, head):
  """The configs' depths (Table 1 and 2) at small width, against the one-pass
  redraw of the naive sampler's draws: every step, cheaper than naive."""
  model, variables = random_model(3, kernel, layers, True, conditioning, (8, 8),
                                  head_features=head)
  h = example_h(model, 2)
  key = jax.random.PRNGKey(3)
  cached = pj.sample(model, variables, key, 2, h=h)
  np.testing.assert_array_equal(pj.sampling.redraw(model, variables, key, cached, h=h),
                                cached)
  assert len(np.unique(cached)) > 10


def _fixed_logit_model(logits_K, channels=1):
  """Every weight zero except the output bias: logits are `logits_K` everywhere."""
  model = pj.GatedPixelCNN(num_layers=1, features=3 * channels, channels=channels,
                           image_size=(4, 4))
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, channels), jnp.uint8))
  variables = jax.tree_util.tree_map(jnp.zeros_like, variables)
  bias = jnp.tile(jnp.asarray(logits_K, jnp.float32), channels)
  variables["params"]["head_out"]["bias"] = bias
  return model, variables


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_samples_follow_the_softmax(temperature):
  logits = np.full(256, -1e4, np.float32)
  logits[[3, 100, 200, 255]] = [0.0, 1.0, -0.5, 0.5]
  model, variables = _fixed_logit_model(logits)
  draws = pj.sample(model, variables, jax.random.PRNGKey(0), 400,
                    temperature=temperature).ravel()               # 6,400 draws
  values, counts = np.unique(draws, return_counts=True)
  assert set(values) <= {3, 100, 200, 255}
  p = np.exp(logits[[3, 100, 200, 255]] / temperature)
  p /= p.sum()
  observed = np.array([np.sum(draws == v) for v in (3, 100, 200, 255)])
  expected = p * draws.size
  chi2 = np.sum((observed - expected) ** 2 / expected)
  assert chi2 < 25.0  # 3 dof: P(chi2 > 25) < 2e-5, so this never flakes.


def test_completion_keeps_the_prefix():
  model, variables = random_model(3, 3, 2, size=(6, 5))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
  top = images[:, :3]
  for method in ("cached", "naive"):
    out = pj.sample(model, variables, jax.random.PRNGKey(1), 2, prefix=top,
                    method=method)
    np.testing.assert_array_equal(out[:, :3], top)
    assert (out[:, 3:] != images[:, 3:]).any()
  n = 2 * 5 * 3 + 7  # Any raster prefix: two rows, a pixel and a bit.
  out = pj.sample(model, variables, jax.random.PRNGKey(1), 2, prefix=(images, n))
  np.testing.assert_array_equal(out.reshape(2, -1)[:, :n], images.reshape(2, -1)[:, :n])
  naive = pj.sample(model, variables, jax.random.PRNGKey(1), 2, prefix=(images, n),
                    method="naive")
  np.testing.assert_array_equal(out, naive)


def test_loaded_weights_sample_on_three_devices_with_padding(tmp_path):
  """What the README does, on a host with 3 devices: pj.load puts the weights
  on one device, pj.sample spreads 4 images (padded to 6) over all three."""
  trained = run_cli("--config=configs/default.py:smoke", f"--workdir={tmp_path}")
  assert trained.returncode == 0, trained.stderr[-3000:]
  code = textwrap.dedent(f"""
      import jax, numpy as np
      from jax.sharding import Mesh
      import pixelcnn_jax as pj
      assert jax.device_count() == 3
      model, variables, _ = pj.load({str(tmp_path)!r})
      key = jax.random.PRNGKey(0)
      four = pj.sample(model, variables, key, 4)
      one_device = Mesh(np.array(jax.devices()[:1]), ("data",))
      six = pj.sample(model, variables, key, 6, mesh=one_device)
      assert four.shape == (4, 8, 8, 1), four.shape
      # The padding rows copy row 0 and leave the others' draws unchanged.
      np.testing.assert_array_equal(four, six[:4])
      # The fused pass runs on one device, and says so on a mesh of three.
      fused = pj.sample(model, variables, key, 6, mesh=one_device, kernel="pallas")
      np.testing.assert_array_equal(fused, six)
      try:
        pj.sample(model, variables, key, 4, kernel="pallas")
        raise AssertionError("no error")
      except ValueError as e:
        assert "runs on one device, the mesh has 3" in str(e), e
      """)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                              XLA_FLAGS=host_devices(3)))
  assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("kwargs,message", [
    (dict(num=0), "num must be a positive integer"),
    (dict(num=2, temperature=0.0), "temperature must be > 0"),
    (dict(num=2, method="fast"), "method must be one of"),
    (dict(num=2, prefix=np.zeros((2, 2, 4, 3), np.uint8)), "prefix rows"),
    (dict(num=2, prefix=np.zeros((2, 2, 5, 3), np.float32)), "prefix rows"),
    (dict(num=2, prefix=np.zeros((3, 2, 5, 3), np.uint8)), "prefix rows"),
    (dict(num=2, prefix=(np.zeros((2, 6, 5, 3), np.uint8), 10**6)), "prefix length"),
    (dict(num=2, h=jnp.array([0, 1])), "unconditional"),
    (dict(num=2, kernel="cuda"), "kernel must be one of"),
])
def test_bad_input(kwargs, message):
  model, variables = random_model(3, 3, 1, size=(6, 5))
  with pytest.raises(ValueError, match=message):
    pj.sample(model, variables, jax.random.PRNGKey(0), **kwargs)


@pytest.mark.parametrize("call, what", [
    (lambda ae: pj.sample(ae, {}, jax.random.PRNGKey(0), 2), "pj.sample"),
    (lambda ae: pj.sampling.redraw(ae, {}, jax.random.PRNGKey(0), np.zeros((1, 4, 4, 3))),
     "pj.sampling.redraw"),
    (lambda ae: pj.compress(ae, {}, np.zeros((1, 4, 4, 3), np.uint8)), "pj.compress"),
    (lambda ae: pj.decompress(ae, {}, b""), "pj.decompress"),
])
def test_an_auto_encoder_is_refused_with_the_way_to_its_decoder(call, what):
  ae = pj.autoencoder.PixelCNNAutoEncoder(
      pj.autoencoder.Encoder(code_dim=4), pj.GatedPixelCNN(
          num_layers=1, features=6, conditioning="vector", cond_dim=4, image_size=(4, 4)))
  with pytest.raises(ValueError, match=f"^{what} takes a GatedPixelCNN, got "
                                       "PixelCNNAutoEncoder; for an auto-encoder, pass its "
                                       "decoder") as e:
    call(ae)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 6, 5, 3), np.float32), r"uint8 \[B, 6, 5, 3\], got float32 \(2, 6, 5, 3\)"),
    (np.zeros((2, 5, 5, 3), np.uint8), r"uint8 \[B, 6, 5, 3\], got uint8 \(2, 5, 5, 3\)"),
    (np.zeros((6, 5, 3), np.uint8), r"got uint8 \(6, 5, 3\)"),
    (np.full((1, 6, 5, 3), 300).tolist(), r"got int64 \(1, 6, 5, 3\)"),
])
def test_redraw_takes_uint8_images_of_the_model(images, message):
  model, variables = random_model(3, 3, 1, size=(6, 5))
  with pytest.raises(ValueError, match=message):
    pj.sampling.redraw(model, variables, jax.random.PRNGKey(0), images)


def test_bad_conditioning_input():
  model, variables = random_model(3, 3, 1, conditioning="class", size=(4, 4))
  with pytest.raises(ValueError, match="pass h"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 2)
  with pytest.raises(ValueError, match="label 4 is outside 0..3"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 2, h=np.array([0, 4]))
  with pytest.raises(ValueError, match="label -1 is outside"):
    pj.sample(model, variables, jax.random.PRNGKey(0), 2, h=np.array([-1, 0]))


@pytest.mark.parametrize("channels,skip,conditioning,head", [(3, True, "class", 12),
                                                            (1, False, "vector", 0)])
def test_cached_logits_are_the_full_networks(channels, skip, conditioning, head):
  """Teacher-forced on finished images, the cached loop's logits at every
  sub-pixel are the full forward pass's, to float32 rounding."""
  from jax.experimental import io_callback
  from pixelcnn_jax.cached_loop import cached_loop
  model, variables = random_model(channels, 5, 3, skip, conditioning, (5, 6),
                                  head_features=head)
  h = example_h(model, 2)
  images = jax.random.randint(jax.random.PRNGKey(5), (2, 5, 6, channels), 0, 256,
                              jnp.int32).astype(jnp.uint8)
  seen = {}

  def record(t, logits_BK):
    seen[int(t)] = np.asarray(logits_BK)

  def choose(logits_BK, t, known_B, _):
    io_callback(record, None, t, logits_BK, ordered=True)
    return known_B

  out = jax.jit(lambda v, x, h: cached_loop(model, v, x, h, choose))(variables, images, h)
  np.testing.assert_array_equal(out, images)
  full_BTK = np.asarray(model.apply(variables, images, h=h)).reshape(2, -1, 256)
  assert sorted(seen) == list(range(full_BTK.shape[1]))
  cached_BTK = np.stack([seen[t] for t in sorted(seen)], axis=1)
  np.testing.assert_allclose(cached_BTK, full_BTK, rtol=1e-5, atol=1e-5)
