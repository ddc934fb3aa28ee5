"""Autoregressive sampling: a naive reference and an incremental cached sampler.

Both visit sub-pixels t = ((i * W) + j) * C + c in raster-then-R,G,B order and
draw sub-pixel t as argmax(logits / T + Gumbel(fold_in(key, t))), the division
taken as a product by 1 / T (fused_pass.gumbel_scores), so with the same key
and the same logits they return the same bytes.

`naive` runs the whole network on the canvas once per sub-pixel.
`cached` runs the same arithmetic incrementally (cached_loop.py): a row of
the vertical stack at a time, and one colour group of the horizontal stack
and one colour's logits per sub-pixel.

`redraw` recomputes, from one forward pass, what `naive` draws at every
sub-pixel given finished images as the past: a cheap check of any sampler.
"""

import functools
import logging
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from pixelcnn_jax import conditioning, fused_pass
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax.cached_loop import GumbelDraw, cached_loop, gumbel_argmax
from pixelcnn_jax.likelihood import NUM_LEVELS
from pixelcnn_jax.model import GatedPixelCNN, require_pixelcnn

METHODS = ("cached", "naive")
KERNELS = ("auto", "xla", "pallas")
# kernel="auto" takes the fused kernel on a GPU where it was measured faster
# than XLA's ops (H100 and H200, bf16, experiments/RESULTS.md). Narrow models
# (not fused_pass.is_wide, e.g. 15 x 132) up to FUSED_MAX_BATCH images, the
# largest batch timed: on an H200 with 8-image blocks, 16 and 1,024 images in
# 0.132 and 0.292 s against 0.272 and 0.633 (an earlier kernel, with
# 64-image blocks, lost at 256 images on an H100: 0.52 s against 0.48). Wide
# ones at every batch, with the earlier groups' kernel: 20 x 384 drew 16 and
# 1,024 images in 0.280 and 1.078 s against 0.492 and 1.682 (H200).
FUSED_MAX_BATCH = 1024
# XLA's command buffers (CUDA graphs) for every op, loops and branches
# included, when command_buffers=True. They helped the cached loop before its
# colour-restricted passes (3.32 -> 2.33 s for 16 images) and now cost 3-18%
# on an H100 (experiments/RESULTS.md), so by default XLA keeps its own choice.
COMMAND_BUFFERS = {"xla_gpu_enable_command_buffer":
                   "FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,CONDITIONAL,WHILE",
                   "xla_gpu_graph_min_graph_size": 1}
# cuDNN's fusions of each convolution with its pointwise neighbours (XLA's
# ConvFusionRewriter), for the cached loop of bf16 models drawing at most this
# many images a device (0: never). On an H200 they were at most 0.1% slower
# from 1 to 64 images (16 images of 15 x 132: 2.2% faster over six pairs; 32
# of 20 x 384: 3.3%), level at 128, and 4% slower at 256 images of 15 x 132. The
# draws were the same as without them where both were compared (16 images of
# 15 x 132, 32 of 20 x 384), and the bf16 per-step disagreement stayed within
# issue #10's 0.1% (0.073% at 64 images of 15 x 132). They slow training by
# 8-16%, so no other jit takes them (experiments/RESULTS.md). They are
# cuDNN's, so other backends never get the option.
CONV_FUSION_MAX_BATCH = 64
CONV_FUSION_BACKENDS = ("gpu",)
CONV_FUSION_OPTIONS = {"xla_gpu_experimental_enable_conv_fusion": True}
# Per model and fused-kernel overrides, the most images per kernel instance
# once a larger block did not fit the GPU's shared memory; 0 where none did
# (kernel="auto" then uses XLA's ops). A block's shared memory does not depend
# on the batch, so what one batch learnt holds for every batch.
_FUSED_CAP = {}
# The smallest block tried: half the library's (fused_pass.settings), the
# smallest timed on a GPU (experiments/RESULTS.md).
MIN_FUSED_BLOCK = 4


def sample(model: GatedPixelCNN, variables, key: jax.Array, num: int, h=None,
           method: str = "cached", temperature: float = 1.0, prefix=None,
           mesh: Optional[jax.sharding.Mesh] = None,
           shared_noise: bool = False, kernel: str = "auto",
           command_buffers: bool = False) -> np.ndarray:
  """Draws `num` images, uint8 [num, H, W, C], H, W = model.image_size.

  prefix: known content to keep exactly and complete, either uint8
    [num, R, W, C] (the top R rows) or a pair (uint8 [num, H, W, C], n), as a
    tuple or a list, whose first n sub-pixels in raster-then-colour order are
    known.
  mesh: the batch is split over its batch axes; default all devices.
  kernel: how the cached sampler runs a colour pass: "xla" (XLA's ops) or
    "pallas" (one fused kernel per pass; on CPU through Pallas's interpreter,
    which is slow and only for tests), on one device. Where a block of images
    (fused_block) does not fit the GPU's shared memory, "pallas" halves it
    down to MIN_FUSED_BLOCK and then raises. Models with skip connections
    need "xla". "auto": "pallas" on a GPU for a one-device mesh and no skip
    connections where it is the faster (_fused_is_faster), falling back to
    "xla" where no block fits; "xla" otherwise. All draw the same images.
  shared_noise: every image gets the Gumbel noise that a one-image draw with
    this key gets, so images that differ only in h differ only through h:
    the rows of an interpolation.
  command_buffers: compile the cached loop with XLA's command buffers for
    every op (COMMAND_BUFFERS); False keeps XLA's defaults. The draws do not
    change.
  """
  require_pixelcnn(model, "pj.sample")
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  if not isinstance(num, (int, np.integer)) or num <= 0:
    raise ValueError(f"num must be a positive integer, got {num!r}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if kernel not in KERNELS:
    raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
  height, width = model.image_size
  canvas, n_known = _prefix_canvas(prefix, num, height, width, model.channels)
  conditioning.check_on_host(h, model, num, "sample h")

  if mesh is None:
    mesh = mesh_lib.make_mesh({mesh_lib.DATA: -1})
  if kernel == "pallas" and mesh.size > 1:
    raise ValueError(f"kernel='pallas' runs on one device, the mesh has {mesh.size}; "
                     "pass mesh= over one device, or kernel='xla'")
  shards = mesh_lib.batch_devices(mesh)
  padded = -(-num // shards) * shards  # Pad to a multiple of the devices, trim after.

  def put(a):
    if a is None:
      return None
    return jax.device_put(mesh_lib.pad_rows(np.asarray(a), padded),
                          mesh_lib.batch_sharding(mesh))

  # pj.load puts the weights on one device; jit needs them on the mesh's.
  variables = jax.device_put(variables, mesh_lib.replicated(mesh))
  args = (model, variables, key, put(canvas), put(h), jnp.int32(n_known),
          jnp.float32(temperature), shared_noise)
  if method == "naive":
    out = _naive(*args)
  else:
    cached = _cached_loop(model, command_buffers, padded // shards)
    on_gpu = jax.default_backend() == "gpu"
    if kernel == "auto":
      out = None
      if (on_gpu and mesh.size == 1 and not model.skip
          and _fused_is_faster(model, padded)):
        out = _cached_fused(cached, args, padded, strict=False)
      if out is None:
        out = cached(*args, "xla", None)
    elif kernel == "pallas" and on_gpu:
      out = _cached_fused(cached, args, padded, strict=True)
    else:
      out = cached(*args, "pallas_interpret" if kernel == "pallas" else kernel, None)
  # Every process gets the whole batch, also when the mesh spans several hosts.
  return np.asarray(multihost_utils.process_allgather(out, tiled=True))[:num]


def fused_block(model: GatedPixelCNN, num: Optional[int] = None) -> int:
  """Images per instance of the fused kernel when sample() draws `num`
  images of `model` on this GPU (None: the most at any batch):
  fused_pass.batch_block, capped where a larger block did not fit; 0 where
  none did."""
  cap = _FUSED_CAP.get(_fused_case(model))
  return 0 if cap == 0 else fused_pass.batch_block(model, num, cap)


def _fused_case(model):
  return model, fused_pass.OVERRIDE, fused_pass.EARLIER_OVERRIDE


def _cached_fused(cached, args, batch, strict):
  """The cached loop through the fused kernel at the largest block that fits
  the GPU's shared memory, halving it after each RESOURCE_EXHAUSTED (not
  under fused_pass.OVERRIDE, whose block is asked for exactly). Where no
  block fits: None, or a ValueError if `strict`."""
  model, error = args[0], "no block fitted at an earlier call"
  while block := fused_block(model, batch):
    try:
      # Waits for the result, so that an error raised while the kernel loads
      # surfaces here.
      return jax.block_until_ready(cached(*args, "pallas", block))
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      error = str(e).splitlines()[0][:200]
      half = block // 2 if fused_pass.OVERRIDE is None else 0
      half = half if half >= MIN_FUSED_BLOCK else 0
      _FUSED_CAP[_fused_case(model)] = half
      logging.warning("the fused sampling kernel does not fit this GPU at %d images a "
                      "block (%s); %s", block, error,
                      f"trying {half}" if half else "no smaller block is tried")
  if strict:
    raise ValueError("kernel='pallas': the fused sampling kernel does not fit this GPU's "
                     f"shared memory for this model ({error}); use kernel='xla'")
  logging.warning("using kernel='xla' for this model")
  return None


def _cached_loop(model, command_buffers: bool, batch: int):
  """The cached loop compiled with the options asked for and those that pay
  at this many images a device, or XLA's defaults."""
  options = {**(COMMAND_BUFFERS if command_buffers else {}),
             **(CONV_FUSION_OPTIONS if _conv_fusion(model, batch) else {})}
  return _cached_with(tuple(options.items()))


@functools.lru_cache(maxsize=None)
def _cached_with(options: tuple):
  """One jit of the cached loop per set of compiler options."""
  return jax.jit(_cached_body, static_argnums=(0, 7, 8, 9), compiler_options=dict(options))


def _conv_fusion(model, batch: int) -> bool:
  return (jax.default_backend() in CONV_FUSION_BACKENDS
          and jnp.dtype(model.dtype) == jnp.bfloat16 and batch <= CONV_FUSION_MAX_BATCH)


def _fused_is_faster(model, batch: int) -> bool:
  return fused_pass.is_wide(model) or batch <= FUSED_MAX_BATCH


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
  require_pixelcnn(model, "pj.sampling.redraw")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  shape = (*model.image_size, model.channels)
  images = images if hasattr(images, "dtype") else np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != shape:
    raise ValueError(f"images must be uint8 [B, {', '.join(map(str, shape))}], got "
                     f"{images.dtype} {tuple(images.shape)}")
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
  return gumbel_argmax(logits_BK, 1 / temperature, gumbel)


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


def _cached_body(model, variables, key, canvas, h, n_known, temperature, shared, kernel,
                 max_block):
  B, _, W, C = canvas.shape

  def row_noise(i):
    """Row i's Gumbel noise [W, C, B or 1, 256] in one call: the very values
    that _draw makes at each t of the row."""
    t_WC = (i * W + jnp.arange(W))[:, None] * C + jnp.arange(C)[None, :]
    shape = (1 if shared else B, NUM_LEVELS)
    return jax.vmap(jax.vmap(lambda t: jax.random.gumbel(jax.random.fold_in(key, t),
                                                         shape)))(t_WC)

  draw = GumbelDraw(row_noise, 1 / temperature, n_known)
  return cached_loop(model, variables, canvas, h, draw, kernel=kernel, max_block=max_block)
