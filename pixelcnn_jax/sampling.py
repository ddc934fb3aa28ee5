"""Autoregressive sampling: a naive reference and an incremental cached sampler.

Both visit sub-pixels t = ((i * W) + j) * C + c in raster-then-R,G,B order and
draw sub-pixel t as argmax(logits / T + Gumbel(fold_in(key, t))), so with the
same key and the same logits they return the same bytes.

`naive` runs the whole network on the canvas once per sub-pixel.
`cached` runs the same layers on windows: once per row, each vertical layer
computes that row from a cache of the k-1 rows of its input above it; once per
sub-pixel, each horizontal layer computes one position from a cache of the m
positions to its left. Features at a pixel never depend on its own last
colour, so the final colour pass leaves exactly the features the next
positions need.

`redraw` recomputes, from one forward pass, what `naive` draws at every
sub-pixel given finished images as the past: a cheap check of any sampler.
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from pixelcnn_jax import conditioning
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax.model import GatedPixelCNN, normalize

METHODS = ("cached", "naive")


def sample(model: GatedPixelCNN, variables, key: jax.Array, num: int, h=None,
           method: str = "cached", temperature: float = 1.0, prefix=None,
           mesh: Optional[jax.sharding.Mesh] = None,
           shared_noise: bool = False) -> np.ndarray:
  """Draws `num` images, uint8 [num, H, W, C], H, W = model.image_size.

  prefix: known content to keep exactly and complete, either uint8
    [num, R, W, C] (the top R rows) or a pair (uint8 [num, H, W, C], n), as a
    tuple or a list, whose first n sub-pixels in raster-then-colour order are
    known.
  mesh: the batch is split over its batch axes; default all devices.
  shared_noise: every image gets the Gumbel noise that a one-image draw with
    this key gets, so images that differ only in h differ only through h:
    the rows of an interpolation.
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if not isinstance(num, (int, np.integer)) or num <= 0:
    raise ValueError(f"num must be a positive integer, got {num!r}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  height, width = model.image_size
  canvas, n_known = _prefix_canvas(prefix, num, height, width, model.channels)
  # Checked here, on the host, so that bad h fails before any compilation.
  if h is not None and model.num_classes > 0:
    conditioning.check_labels(np.asarray(h), model.num_classes, "sample h")
  conditioning.embed(None if h is None else np.asarray(h), model.conditioning,
                     model.num_classes, model.cond_dim, num)

  if mesh is None:
    mesh = mesh_lib.make_mesh({mesh_lib.DATA: -1})
  shards = mesh_lib.batch_devices(mesh)
  padded = -(-num // shards) * shards  # Pad to a multiple of the devices, trim after.

  def put(a):
    if a is None:
      return None
    a = np.asarray(a)
    a = np.concatenate([a, np.repeat(a[:1], padded - num, axis=0)])
    return jax.device_put(a, mesh_lib.batch_sharding(mesh))

  # pj.load puts the weights on one device; jit needs them on the mesh's.
  variables = jax.device_put(variables, mesh_lib.replicated(mesh))
  fn = _naive if method == "naive" else _cached
  out = fn(model, variables, key, put(canvas), put(h), jnp.int32(n_known),
           jnp.float32(temperature), shared_noise)
  # Every process gets the whole batch, also when the mesh spans several hosts.
  return np.asarray(multihost_utils.process_allgather(out, tiled=True))[:num]


def _prefix_canvas(prefix, num, height, width, channels):
  full = (num, height, width, channels)
  if prefix is None:
    return np.zeros(full, np.uint8), 0
  if isinstance(prefix, (tuple, list)) and len(prefix) == 2 and np.ndim(prefix[1]) == 0:
    images, n = prefix
    images = np.asarray(images)
    if images.shape != full or images.dtype != np.uint8:
      raise ValueError(f"prefix images must be uint8 {full}, got {images.dtype} "
                       f"{images.shape}")
    if not 0 <= int(n) <= height * width * channels:
      raise ValueError(f"prefix length must be in 0..{height * width * channels}, "
                       f"got {n}")
    return images, int(n)
  rows = np.asarray(prefix)
  if (rows.dtype != np.uint8 or rows.ndim != 4 or rows.shape[0] != num
      or rows.shape[2:] != (width, channels) or rows.shape[1] > height):
    raise ValueError(f"prefix rows must be uint8 [{num}, R<={height}, {width}, "
                     f"{channels}], got {rows.dtype} {rows.shape}")
  canvas = np.zeros(full, np.uint8)
  canvas[:, :rows.shape[1]] = rows
  return canvas, rows.shape[1] * width * channels


def redraw(model: GatedPixelCNN, variables, key: jax.Array, images, h=None,
           temperature: float = 1.0) -> np.ndarray:
  """What the naive sampler would draw at every sub-pixel with `images` as the
  past, uint8 [B, H, W, C], from one forward pass.

  The model is causal, so the logits at sub-pixel t from the whole of `images`
  are those the naive sampler computes at step t, whatever follows t. Where the
  result differs from `images`, a sampler that produced them departed from the
  reference with the same past: the per-step disagreement rate in bf16.
  """
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  return np.asarray(_redraw(model, variables, key, jnp.asarray(images),
                            None if h is None else jnp.asarray(h),
                            jnp.float32(temperature)))


@functools.partial(jax.jit, static_argnums=0)
def _redraw(model, variables, key, images, h, temperature):
  B, H, W, C = images.shape
  logits_TBK = jnp.moveaxis(
      model.apply(variables, images, h=h).reshape(B, H * W * C, -1), 1, 0)
  # The very draw of both samplers, at every t at once.
  draws_TB = jax.vmap(lambda t, l: _draw(l, key, t, temperature))(
      jnp.arange(H * W * C), logits_TBK)
  return draws_TB.T.reshape(B, H, W, C)


def _draw(logits_BK, key, t, temperature, shared=False):
  shape = (1, logits_BK.shape[1]) if shared else logits_BK.shape
  gumbel = jax.random.gumbel(jax.random.fold_in(key, t), shape)
  return jnp.argmax(logits_BK / temperature + gumbel, axis=-1).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnums=(0, 7))
def _naive(model, variables, key, canvas, h, n_known, temperature, shared):
  _, height, width, channels = canvas.shape

  def body(t, canvas):
    i, j, c = t // (width * channels), (t // channels) % width, t % channels
    logits = model.apply(variables, canvas, h=h)
    logits_BK = jax.lax.dynamic_index_in_dim(
        jax.lax.dynamic_index_in_dim(
            jax.lax.dynamic_index_in_dim(logits, i, 1, False), j, 1, False),
        c, 1, False)
    known = canvas[jnp.arange(canvas.shape[0]), i, j, c]
    value = jnp.where(t < n_known, known, _draw(logits_BK, key, t, temperature, shared))
    return canvas.at[:, i, j, c].set(value)

  return jax.lax.fori_loop(0, height * width * channels, body, canvas)


@functools.partial(jax.jit, static_argnums=(0, 7))
def _cached(model, variables, key, canvas, h, n_known, temperature, shared):
  def choose(logits_BK, t, known_B):
    return jnp.where(t < n_known, known_B, _draw(logits_BK, key, t, temperature, shared))
  return cached_loop(model, variables, canvas, h, choose)


def cached_loop(model, variables, canvas, h, choose):
  """The cached sampler's loop over sub-pixels t, in order: at each, the
  logits given everything before t, then choose(logits [B, 256], t, the
  canvas's value at t [B]) -> the value to set. Sampling draws; the lossless
  coder (compression.py) encodes the known value or decodes a new one, on
  this very arithmetic. Call it under jit."""
  net = model.bind(variables)
  B, H, W, C = canvas.shape
  (m, k), L, p = model.extents, model.num_layers, model.features
  cond = net.embed_condition(h, B, H, W)
  dtype = model.dtype
  no_pad = ((0, 0), (0, 0))

  def row_step(carry, i):
    canvas, v_caches = carry
    x_pad = jnp.pad(normalize(canvas), ((0, 0), (k, 0), (m, m), (0, 0)))
    v_in = jax.lax.dynamic_slice_in_dim(x_pad, i, k, axis=1)   # rows i-k .. i-1
    cond_row = cond
    if cond is not None and cond.shape[1] > 1:
      cond_row = jax.lax.dynamic_slice_in_dim(cond, i, 1, axis=1)
    links, new_caches = [], []
    for l in range(L):
      v_out, link = net.vertical(l, v_in, no_pad, cond_row)
      links.append(link)
      if l + 1 < L:
        v_in = jnp.concatenate(
            [v_caches[l], jnp.pad(v_out, ((0, 0), (0, 0), (m, m), (0, 0)))], axis=1)
        new_caches.append(v_in[:, 1:])

    def col_step(carry, j):
      canvas, h_caches = carry
      for c in range(C):
        pixel = normalize(jax.lax.dynamic_slice(canvas, (0, i, j, 0), (B, 1, 1, C)))
        inputs, x, skips = [], pixel, []
        for l in range(L):
          inputs.append(x)
          window = jnp.concatenate([h_caches[l], x.astype(h_caches[l].dtype)], axis=2)
          link = jax.lax.dynamic_slice_in_dim(links[l], j, 1, axis=2)
          x, skip = net.horizontal(l, window, link, no_pad)
          skips.append(skip)
        logits_BK = net.head(sum(skips) if model.skip else x)[:, 0, 0, c]
        t = (i * W + j) * C + c
        canvas = canvas.at[:, i, j, c].set(choose(logits_BK, t, canvas[:, i, j, c]))
      # The last colour pass saw every colour its features depend on; layer 0's
      # input is the pixel itself, now complete.
      inputs[0] = normalize(jax.lax.dynamic_slice(canvas, (0, i, j, 0), (B, 1, 1, C)))
      h_caches = [jnp.concatenate([hc[:, :, 1:], x_in.astype(hc.dtype)], axis=2)
                  for hc, x_in in zip(h_caches, inputs)]
      return (canvas, h_caches), None

    h_caches = [jnp.zeros((B, 1, m, C if l == 0 else p), jnp.float32 if l == 0 else dtype)
                for l in range(L)]
    (canvas, _), _ = jax.lax.scan(col_step, (canvas, h_caches), jnp.arange(W))
    return (canvas, new_caches), None

  v_caches = [jnp.zeros((B, k - 1, W + 2 * m, p), dtype) for _ in range(L - 1)]
  (canvas, _), _ = jax.lax.scan(row_step, (canvas, v_caches), jnp.arange(H))
  return canvas
