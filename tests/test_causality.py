"""The autoregressive order, proved on random weights and random images.

For every output sub-pixel (i, c) in raster-then-R,G,B order:
- the gradient of its logits with respect to every input sub-pixel at or
  after (i, c) is exactly zero;
- every earlier input sub-pixel inside the receptive field changes its logits
  (finite differences over several images, so a dead unit can't hide a path);
- and nothing outside the receptive field does, so what it sees above a pixel
  is a full rectangle: no blind spot.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pixelcnn_jax as pj

from conftest import example_h, expected_dependencies, random_model

H, W = 7, 9

CASES = [  # channels, kernel, layers, skip, conditioning, head_features
    (1, 3, 1, False, "none", 0),
    (1, 3, 4, True, "none", 0),
    (1, 5, 2, False, "none", 0),
    (3, 3, 1, False, "none", 0),
    (3, 3, 3, False, "none", 0),
    (3, 5, 2, True, "none", 24),
    (3, 3, 2, False, "class", 0),
    (1, 3, 2, True, "vector", 0),
    (3, 3, 2, False, "spatial", 0),
]


def _jacobian(model, variables, x, h):
  """d(random projection of logits[i, j, c]) / d x[i2, j2, c2] for one image."""
  proj = jax.random.normal(jax.random.PRNGKey(7), (256,))
  f = lambda xf: jnp.einsum("bhwck,k->bhwc", model.apply(variables, xf, h=h), proj)[0]
  jac = jax.jacrev(f)(x.astype(jnp.float32))
  return np.asarray(jac)[:, :, :, 0]


def _influence(model, variables, seeds, channels):
  """infl[i, j, c, i2, j2, c2]: changing input (i2, j2, c2) changes logits (i, j, c)."""
  n = H * W * channels
  apply = jax.jit(model.apply)
  infl = np.zeros((H, W, channels) * 2, bool)
  for seed in seeds:
    base = np.asarray(jax.random.randint(jax.random.PRNGKey(seed), (1, H, W, channels),
                                         0, 256), np.uint8)
    batch = np.repeat(base, n + 1, axis=0)
    flat = batch[:n].reshape(n, n)
    flat[np.arange(n), np.arange(n)] += 128  # uint8 wraps: a large change.
    h = example_h(model, 1, seed)
    h = None if h is None else jnp.repeat(h, n + 1, axis=0)  # Same h for all.
    out = np.asarray(apply(variables, jnp.asarray(batch), h=h))
    # The unperturbed image rides in the same batch, so the comparison is exact.
    changed = np.any(out[:n] != out[n:], axis=-1)           # [n, H, W, C]
    infl |= np.moveaxis(changed.reshape(n, H, W, channels), 0, -1).reshape(infl.shape)
  return infl


@pytest.mark.parametrize("channels,kernel,layers,skip,conditioning,head", CASES)
def test_order_and_receptive_field(channels, kernel, layers, skip, conditioning, head):
  model, variables = random_model(channels, kernel, layers, skip, conditioning,
                                  size=(H, W), head_features=head)
  expected = expected_dependencies(H, W, channels, layers, kernel)
  x = jax.random.randint(jax.random.PRNGKey(3), (1, H, W, channels), 0, 256)
  jac = _jacobian(model, variables, x, example_h(model, 1))
  n = H * W * channels
  order = np.arange(n).reshape(H, W, channels)
  at_or_after = order[None, None, None] >= order[..., None, None, None]
  assert np.all(jac[at_or_after] == 0.0), "a sub-pixel sees itself or the future"
  assert np.all(jac[~expected] == 0.0)

  infl = _influence(model, variables, seeds=(11, 12, 13), channels=channels)
  missing = expected & ~infl
  extra = infl & ~expected
  assert not extra.any(), f"{extra.sum()} dependencies outside the receptive field"
  assert not missing.any(), f"{missing.sum()} receptive-field inputs have no influence"


def test_visible_region_above_is_a_rectangle():
  """The classic PixelCNN misses a triangle up and to the right; this one must not."""
  layers, kernel = 3, 3
  model, variables = random_model(1, kernel, layers, size=(H, W))
  infl = _influence(model, variables, seeds=(1, 2), channels=1)
  i, j = H - 1, W // 2
  seen = infl[i, j, 0, :i, :, 0]                 # rows above the pixel
  rows = np.flatnonzero(seen.any(axis=1))
  cols = np.flatnonzero(seen.any(axis=0))
  assert seen[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
  assert seen.sum() == len(rows) * len(cols)
  assert cols.max() - j == j - cols.min() == layers * (kernel // 2)


def test_float_input_matches_integer_input_and_has_gradients():
  model, variables = random_model(3, 3, 2)
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 6, 7, 3), 0, 256)
  a = model.apply(variables, x.astype(jnp.uint8))
  b = model.apply(variables, x.astype(jnp.float32))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  g = jax.grad(lambda xf: model.apply(variables, xf).sum())(x.astype(jnp.float32))
  assert np.abs(np.asarray(g)).sum() > 0


@pytest.mark.parametrize("conditioning", ["vector", "spatial"])
def test_autoencoder_decoder_is_causal_in_x_for_a_fixed_code(conditioning):
  """The decoder of an auto-encoder, given a code, obeys the same order and
  receptive field; the whole auto-encoder does not (its code sees all of x)."""
  from pixelcnn_jax import autoencoder
  decoder = pj.GatedPixelCNN(num_layers=2, features=18, kernel_size=3, channels=3,
                             conditioning=conditioning, cond_dim=5, spatial_features=4,
                             image_size=(H, W))
  model = autoencoder.PixelCNNAutoEncoder(autoencoder.Encoder(5, 8), decoder)
  x = jax.random.randint(jax.random.PRNGKey(3), (1, H, W, 3), 0, 256)
  variables = model.init(jax.random.PRNGKey(0), x)
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  variables = jax.tree_util.tree_unflatten(
      tree, [a + 0.2 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
  code = model.apply(variables, x, method="encode")
  dec_vars = {"params": variables["params"]["decoder"]}
  jac = _jacobian(decoder, dec_vars, x, code)
  order = np.arange(H * W * 3).reshape(H, W, 3)
  at_or_after = order[None, None, None] >= order[..., None, None, None]
  assert np.all(jac[at_or_after] == 0.0)
  assert np.all(jac[~expected_dependencies(H, W, 3, 2, 3)] == 0.0)
  whole = _jacobian(model, variables, x, None)
  assert np.abs(whole[at_or_after]).max() > 0  # Through the code: not causal.
