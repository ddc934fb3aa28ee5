"""The cached sampler's loop: the model's arithmetic, one sub-pixel at a time.

Sub-pixels t = ((i * W) + j) * C + c are visited in raster-then-R,G,B order.
Once per row, each vertical layer computes that row from a cache of the k-1
rows of its input above it (a window convolution), which gives every
horizontal layer its link for the row. Once per pixel, each horizontal
layer's m left taps are applied to a cache of its input at the m positions to
the left, layers 1..L-1 in one batched dot, shared by the pixel's C colour
passes. Colour
pass c then computes only colour group c of each horizontal layer and only
colour c's 256 logits: by the colour masks, group c reads groups <= c of the
centre tap (< c in layer 0) and of every 1x1, so only those rows of each
weight are read, and groups < c come from the pass that made them. These
blocks are exactly the ones the masks leave whole, so no mask is applied.

The sums are the model's (GatedPixelCNN), regrouped: partial dots accumulate
in float32 and are rounded to the compute dtype where the model rounds its
convolution, then bias and link are added as the model adds them. In float32
the logits agree with the full network's to rounding, and the draws with the
naive sampler's (tests/test_sampling.py).
"""

from typing import Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from pixelcnn_jax import fused_pass
from pixelcnn_jax.likelihood import NUM_LEVELS
from pixelcnn_jax.model import GatedPixelCNN, horizontal_bias, normalize

Choose = Callable[[jax.Array, jax.Array, jax.Array, Optional[jax.Array]], jax.Array]


def gumbel_argmax(logits_BK, inv_temperature, noise_BK):
  """uint8 [B]: each row's level of the highest fused_pass.gumbel_scores."""
  scores = fused_pass.gumbel_scores(logits_BK, inv_temperature, noise_BK)
  return jnp.argmax(scores, axis=-1).astype(jnp.uint8)


class GumbelDraw(NamedTuple):
  """The sampler's choice at sub-pixel t: the canvas's value where t <
  n_known, else argmax(gumbel_scores(logits, inv_temperature, noise_t)).
  row_noise(i): row i's noise, [W, C, B or 1, 256]. The fused kernel
  (kernel="pallas") makes this choice itself, inside each colour pass."""
  row_noise: Callable[[jax.Array], jax.Array]
  inv_temperature: jax.Array
  n_known: jax.Array

  def choose(self, logits_BK, t, known_B, noise_BK):
    drawn = gumbel_argmax(logits_BK, self.inv_temperature, noise_BK)
    return jnp.where(t < self.n_known, known_B, drawn)

  def forced_row_noise(self, i, known_BWC):
    """Row i's noise [W, C, B, 256], where sub-pixels t < n_known get 0 at
    their known level and -inf at every other, so that the argmax of their
    scores is the known value."""
    noise = self.row_noise(i)
    W, C = noise.shape[:2]
    B = known_BWC.shape[0]
    noise = jnp.broadcast_to(noise, (W, C, B, NUM_LEVELS))
    t_WC = (i * W + jnp.arange(W))[:, None] * C + jnp.arange(C)[None, :]
    known_WCB1 = jnp.transpose(known_BWC, (1, 2, 0))[..., None].astype(jnp.int32)
    forced = jnp.where(jnp.arange(NUM_LEVELS) == known_WCB1, 0.0, -jnp.inf)
    return jnp.where((t_WC < self.n_known)[:, :, None, None], forced, noise)


# Columns per iteration of the loop along a row (lax.scan's unroll). XLA:GPU
# runs a loop's control on the host, a device-to-host copy of the predicate
# per iteration, and the H100 idled for 20% of a 15 x 132 draw; 4 columns per
# iteration drew 1 image 3% faster and 16 images 2.5% faster there, and
# 20 x 384 no slower (experiments/RESULTS.md). Other backends keep their
# loops on the device, so they get 1 (a smaller program). None: that
# choice; an int forces it (bench_sample.py --unroll, tests).
COLUMN_UNROLL: Optional[int] = None
GPU_COLUMN_UNROLL = 4


def column_unroll() -> int:
  if COLUMN_UNROLL is not None:
    return COLUMN_UNROLL
  return GPU_COLUMN_UNROLL if jax.default_backend() == "gpu" else 1


def cached_loop(model: GatedPixelCNN, variables, canvas, h, choose: Union[Choose, GumbelDraw],
                per_row: Optional[Callable[[jax.Array], jax.Array]] = None,
                kernel: str = "xla", max_block: Optional[int] = None):
  """At each sub-pixel t, in order: the logits [B, 256] given everything
  before t, then choose(logits, t, the canvas's value at t [B], extra) -> the
  value to set. extra is per_row(i)[j, c] (per_row(i) [W, C, ...]: e.g. a
  row's noise drawn in one call), or None without per_row. choose may be a
  GumbelDraw, the sampler's choice, which brings its own noise. kernel:
  "xla", or "pallas" for one fused kernel per colour pass that also makes
  the draw, so choose must then be a GumbelDraw (fused_pass.py;
  "pallas_interpret" runs it through Pallas's interpreter, as on a CPU);
  max_block caps its images per kernel instance (fused_pass.batch_block).
  Sampling draws; the lossless coder (compression.py) encodes the known
  value or decodes a new one, on this very arithmetic. Call it under jit."""
  draw = choose if isinstance(choose, GumbelDraw) else None
  if draw is not None:
    choose, per_row = draw.choose, draw.row_noise
  if kernel != "xla" and draw is None:
    raise ValueError("the fused kernel makes the sampler's draw itself: "
                     "choose must be a GumbelDraw")
  net = model.bind(variables)
  B, H, W, C = canvas.shape
  (m, k), L, p = model.extents, model.num_layers, model.features
  cond = net.embed_condition(h, B, H, W)
  no_pad = ((0, 0), (0, 0))
  passes = _ColourPasses(model, variables["params"])
  fused = None if kernel == "xla" else fused_pass.FusedPasses(
      model, variables["params"], interpret=kernel == "pallas_interpret",
      max_block=max_block)
  if fused is not None:
    constants_2K = fused.draw_constants(draw.inv_temperature)

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
      links.append(link[:, 0])
      if l + 1 < L:
        v_in = jnp.concatenate(
            [v_caches[l], jnp.pad(v_out, ((0, 0), (0, 0), (m, m), (0, 0)))], axis=1)
        new_caches.append(v_in[:, 1:])
    links_LBW2p = jnp.stack(links)

    def finish_pixel(canvas, caches, j, pixel_BC, outputs):
      """The pixel into the canvas, and every layer's input at it into the
      caches: they are final now."""
      canvas = jax.lax.dynamic_update_slice(canvas, pixel_BC[:, None, None], (0, i, j, 0))
      return canvas, passes.push(caches, normalize(pixel_BC), outputs)

    def col_step(carry, xs):
      canvas, caches = carry
      j, extra_C = xs
      links_LB2p = jax.lax.dynamic_index_in_dim(links_LBW2p, j, 2, keepdims=False)
      lefts_LB2p = passes.left_taps(caches)
      state = passes.start()
      # The canvas is read and written once per pixel, not per colour: on a
      # GPU each op in this loop is a launch of its own, and launches are most
      # of a small batch's time (experiments/RESULTS.md). Pass c reads the
      # colours < c set here; the masks ignore the rest.
      known_BC = canvas[:, i, j]
      set_B1 = []
      for c in range(C):
        pixel_BC = jnp.concatenate([*set_B1, known_BC[:, c:]], axis=1)
        logits_BK, state = passes.colour(c, normalize(pixel_BC), lefts_LB2p, links_LB2p,
                                         state)
        t = (i * W + j) * C + c
        value_B = choose(logits_BK, t, known_BC[:, c],
                         None if extra_C is None else extra_C[c])
        set_B1.append(value_B[:, None])
      return finish_pixel(canvas, caches, j, jnp.concatenate(set_B1, axis=1),
                          passes.outputs(state)), None

    def fused_col_step(carry, xs):
      """As col_step, with the draw inside each pass's kernel: between the
      kernels of a pixel's passes there is no XLA op."""
      (canvas, caches), state = carry
      j, noise_CBK = xs
      links_LB2p = jax.lax.dynamic_index_in_dim(links_LBW2p, j, 2, keepdims=False)
      base = fused.base(passes.left_taps(caches), links_LB2p)
      for c in range(C):
        state = fused.colour(c, base, noise_CBK, constants_2K, state)
      pixel_BC = fused.drawn(state, B)
      return (finish_pixel(canvas, caches, j, pixel_BC, fused.outputs(state, B)), state), None

    caches = passes.empty_caches(B)
    if fused is None:
      extra = None if per_row is None else per_row(i)
      (canvas, _), _ = jax.lax.scan(col_step, (canvas, caches), (jnp.arange(W), extra),
                                    unroll=column_unroll())
    else:
      noise_WCBK = fused.pad_batch(draw.forced_row_noise(i, canvas[:, i]), axis=2)
      ((canvas, _), _), _ = jax.lax.scan(fused_col_step, ((canvas, caches), fused.start(B)),
                                         (jnp.arange(W), noise_WCBK), unroll=column_unroll())
    return (canvas, new_caches), None

  v_caches = [jnp.zeros((B, k - 1, W + 2 * m, p), model.dtype) for _ in range(L - 1)]
  (canvas, _), _ = jax.lax.scan(row_step, (canvas, v_caches), jnp.arange(H))
  return canvas


class _ColourPasses:
  """The horizontal stack and the head at one pixel, one colour group at a time.

  The weights are cut into the blocks each pass reads and cast once, outside
  the loop. The state of a pixel holds, per layer, the colour groups made so
  far of its gate output and of its output (and skip), and of the head's
  hidden layer.
  """

  def __init__(self, model: GatedPixelCNN, params):
    self.C, self.L, self.skip = model.channels, model.num_layers, model.skip
    self.dtype, self.precision = model.dtype, model.precision
    self.p = model.features
    self.P = self.p // self.C                    # Features per colour group.
    self.m = model.extents[0]
    layers = [params[f"layers_{l}"] for l in range(self.L)]
    kernels = [layer["h_conv"]["kernel"][0, :self.m].astype(self.dtype) for layer in layers]
    self.left_w = (kernels[0], jnp.stack(kernels[1:]) if self.L > 1 else None)
    self.cut = [self._cut(layers, params, model, c) for c in range(self.C)]

  def _cut(self, layers, params, model, c: int):
    """Pass c's blocks: rows of the groups <= c (colours < c in layer 0's
    centre tap), columns of group c; exactly what the masks leave whole."""
    P, dt = self.P, self.dtype
    own = slice(c * P, (c + 1) * P)
    cols = np.arange(c * P, (c + 1) * P)
    cols = np.concatenate([cols, cols + self.p])   # Group c of both gate halves.
    rows = (c + 1) * P
    dense = lambda d: (d["kernel"][:rows, own].astype(dt), d["bias"][own].astype(dt))
    cut = {"cols": cols, "layers": []}
    for l, layer in enumerate(layers):
      centre_rows = c if l == 0 else rows
      cut["layers"].append({
          "centre": (layer["h_conv"]["kernel"][0, self.m, :centre_rows][:, cols].astype(dt)
                     if centre_rows else None),
          "bias": horizontal_bias(layer)[cols].astype(dt),
          "out": dense(layer["h_out"]),
          "skip": dense(layer["skip_out"]) if self.skip else None})
    hidden_p, out_p = params["head_hidden"], params["head_out"]
    Ph = (model.head_features or model.features) // self.C
    own_h = slice(c * Ph, (c + 1) * Ph)
    levels = slice(c * NUM_LEVELS, (c + 1) * NUM_LEVELS)
    cut["hidden"] = (hidden_p["kernel"][:rows, own_h].astype(dt),
                     hidden_p["bias"][own_h].astype(dt))
    cut["logits"] = (out_p["kernel"][:(c + 1) * Ph, levels].astype(dt), out_p["bias"][levels])
    return cut

  def _dot(self, x, w):
    """x @ w in the compute dtype (w is cast already), accumulated in float32."""
    return jnp.einsum("...i,io->...o", x.astype(self.dtype), w,
                      precision=self.precision, preferred_element_type=jnp.float32)

  def empty_caches(self, batch: int):
    """Each layer's input at the m positions left of the pixel: layer 0's
    (the pixels, float32 [B, m, C]) and layers 1..L-1's stacked [L-1, B, m, p]."""
    return (jnp.zeros((batch, self.m, self.C), jnp.float32),
            jnp.zeros((self.L - 1, batch, self.m, self.p), self.dtype))

  def push(self, caches, pixel_BC, outputs):
    """The caches one position on: the pixel and layers 0..L-2's outputs join."""
    first, rest = caches
    first = jnp.concatenate([first[:, 1:], pixel_BC[:, None]], axis=1)
    if self.L > 1:
      new = jnp.stack(outputs[:-1]).astype(self.dtype)[:, :, None]
      rest = jnp.concatenate([rest[:, :, 1:], new], axis=2)
    return first, rest

  def left_taps(self, caches):
    """Every layer's m left taps summed over its cached inputs, float32 [L, B, 2p]."""
    first, rest = caches
    dot = dict(precision=self.precision, preferred_element_type=jnp.float32)
    first = jnp.einsum("bti,tio->bo", first.astype(self.dtype), self.left_w[0], **dot)
    if self.L == 1:
      return first[None]
    rest = jnp.einsum("lbti,ltio->lbo", rest, self.left_w[1], **dot)
    return jnp.concatenate([first[None], rest])

  def start(self):
    return {"gated": [[] for _ in range(self.L)], "out": [[] for _ in range(self.L)],
            "skip": [[] for _ in range(self.L)], "hidden": []}

  def outputs(self, state):
    """Each layer's whole output [B, p], once every colour pass has run."""
    return [jnp.concatenate(groups, axis=-1) for groups in state["out"]]

  def colour(self, c: int, pixel_BC, lefts_LB2p, links_LB2p, state):
    """Colour pass c: group c of every layer, then colour c's logits [B, 256]."""
    P, dt, cut = self.P, self.dtype, self.cut[c]
    own = slice(c * P, (c + 1) * P)
    cols = cut["cols"]
    x = pixel_BC
    for l, w in enumerate(cut["layers"]):
      conv = lefts_LB2p[l][:, cols]
      if w["centre"] is not None:
        conv = conv + self._dot(x[:, :w["centre"].shape[0]], w["centre"])
      pre = conv.astype(dt) + w["bias"] + links_LB2p[l][:, cols]
      state["gated"][l].append(jnp.tanh(pre[:, :P]) * jax.nn.sigmoid(pre[:, P:]))
      gated = jnp.concatenate(state["gated"][l], axis=-1)
      out = self._dense(w["out"], gated)
      if l > 0:
        out = out + x[:, own]
      state["out"][l].append(out)
      if self.skip:
        state["skip"][l].append(self._dense(w["skip"], gated))
      x = jnp.concatenate(state["out"][l], axis=-1)
    if self.skip:
      x = sum(jnp.concatenate(groups, axis=-1) for groups in state["skip"])
    return self._logits(cut, x, state), state

  def _dense(self, w_b, x):
    """Group c of a colour-grouped 1x1 (MaskedDense), from x's groups <= c."""
    w, b = w_b
    return self._dot(x, w).astype(self.dtype) + b

  def _logits(self, cut, features, state):
    state["hidden"].append(self._dense(cut["hidden"], jax.nn.relu(features)))
    hidden = jax.nn.relu(jnp.concatenate(state["hidden"], axis=-1))
    w, b = cut["logits"]
    return self._dot(hidden, w) + b
