"""One colour pass of the cached sampler as one kernel (Pallas).

Colour pass c runs every horizontal layer's colour group c and colour c's
logits (cached_loop.py), then draws colour c. On a GPU that is some 4L
small launches per sub-pixel and a few more for the draw; here it is one
launch per pass and batch block, which reads the pixel's left taps, links
and biases (one array per pixel, all passes) and the draw's noise, and
writes its group, its draw and the drawn value as the next pass's input
into the pixel's state in place. Before each pass c > 0 of a wide model, a
second kernel makes the pass's dots from groups < c for all layers at once
(earlier_groups.py), so that the pass's serial loop over layers does only
group c's own work. Feature vectors
use a padded layout, since Triton's blocks have power-of-two sides: colour
group g occupies slots g*G .. g*G+P-1 of S = G * (C rounded up to a power of
two), G being the group width P rounded up to a power of two; stacks of
per-layer weights are padded to a power-of-two count likewise. And
each weight is cut, once per model, into the blocks that pass c reads:
rows of groups < c ("prev", from earlier passes) and of group c ("own", made
in this pass), columns of group c. Blocks the colour masks zero stay zero.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pixelcnn_jax import earlier_groups
from pixelcnn_jax.earlier_groups import LOGIT_COLUMNS
from pixelcnn_jax.likelihood import NUM_LEVELS
from pixelcnn_jax.model import horizontal_bias, normalize

# bench_sample.py --fused times other (stages, block, warps) settings through this.
OVERRIDE = None
# Whether passes > 0 take their dots from earlier colour groups from a kernel
# of their own (earlier_groups.py) rather than making them in their serial
# loop over layers; None: the library's choice (earlier_kernel), a bool
# forces it (tests, bench_sample.py --earlier).
EARLIER_OVERRIDE = None


def gumbel_scores(logits_BK, inv_temperature, noise_BK):
  """What a draw maximises: logits / T + Gumbel noise, the division taken as a
  product by 1 / T, as the kernel takes it (Triton divides floats
  approximately, XLA exactly), so that every sampler computes the same bits."""
  return logits_BK * inv_temperature + noise_BK


def settings(model) -> tuple:
  """(Triton's pipelining stages for the loop over layers; the most images
  per kernel instance; Triton's warps per instance) for a model, None being
  Triton's default (3 stages, 4 warps). 8-image blocks, many instances in
  parallel, at 3 stages: on an H200 (experiments/RESULTS.md) 15 x 132 in
  bf16 drew 16, 32 and 256 images in 0.130, 0.130 and 0.162 s, against
  0.149, 0.204 and 0.257 with 32-image blocks, and 20 x 384 in 0.279, 0.293
  and 0.471 s with 8 warps, against 0.362, 0.380 and 0.564 at one stage
  and 16 warps; 4-image blocks were within 4% of 8 at 15 x 132. Wide
  models take 8 warps, which cover their larger weight tiles (4 were 4-15%
  slower); at 15 x 132, 8 warps were 4-6% slower than 4. 20 x 384 is near
  the 227 kB of shared memory a block may have (fused_smem.py: 233 kB at 8
  images, whose counts run high; it ran), and sampling.py halves a block
  that does not fit. Float32 models past 32 features per colour take the
  wide settings: 15 x 132 (117 kB) drew 16 and 256 images in 0.163 and
  0.229 s. Past 256 bytes a row (float32 at 20 x 384) 3 stages asked for
  396 kB at every block, so those models take one stage: 20 x 384 in
  float32 then fits and draws 16 and 256 images in 0.586 and 0.834 s,
  against 0.653 and 1.043 with XLA's ops."""
  if OVERRIDE:
    return OVERRIDE
  if not is_wide(model):
    return None, 8, None
  return (1 if row_bytes(model) > 256 else None), 8, 8


def batch_block(model, batch=None, max_block=None) -> int:
  """Images per kernel instance for `batch` images: the batch rounded up to a
  power of two (at least 16), capped by the settings' block and by
  `max_block` where given (sampling.py halves it where a block does not fit
  the GPU); batch None: the most at any batch."""
  block = settings(model)[1]
  if batch is not None:
    block = min(_pow2(max(batch, 16)), block)
  return block if max_block is None else min(block, max_block)


def earlier_kernel(model) -> bool:
  """Whether passes > 0 read the dots from earlier colour groups from
  earlier_groups.py's kernel: for wide models, whose batch blocks are few
  instances for the card and whose pass c reads c + 1 groups' weight
  blocks a layer (20 x 384 on an H200: 16, 64 and 256 images in 0.37, 0.43
  and 0.57 s, against 0.48, 0.55 and 0.63 s without); not for narrow ones,
  where its two launches a pixel cost 8-10% at 15 x 132
  (experiments/RESULTS.md)."""
  return is_wide(model) if EARLIER_OVERRIDE is None else EARLIER_OVERRIDE


def is_wide(model) -> bool:
  """Whether a row of a colour group's weight block takes more than 128
  bytes (group_width > 64 in bf16, > 32 in float32)."""
  return row_bytes(model) > 128


def row_bytes(model) -> int:
  """The bytes of a row of a colour group's weight block."""
  return group_width(model) * jnp.dtype(model.dtype).itemsize


def group_width(model) -> int:
  """G: one colour group's features, padded to a power of two (at least 16)."""
  return _pow2(max(model.features // model.channels, 16))


def _pow2(n: int) -> int:
  return 1 << max(int(n) - 1, 0).bit_length()


class FusedPasses:
  """Weights cut for the fused kernel, and the kernel call for pass c."""

  def __init__(self, model, params, interpret: bool, max_block=None):
    self.C, self.L, self.p = model.channels, model.num_layers, model.features
    self.P = self.p // self.C
    self.head = model.head_features or model.features
    self.Ph = self.head // self.C
    self.G, self.Gh = group_width(model), _pow2(max(self.Ph, 16))
    self.model, self.max_block = model, max_block
    self.num_stages, _, self.num_warps = settings(model)
    self.split = earlier_kernel(model)
    self.S, self.Sh = _pow2(self.C) * self.G, _pow2(self.C) * self.Gh  # Slots.
    self.Cp = _pow2(self.C)
    self.Lp = _pow2(self.L)                      # Layers, padded.
    if model.skip:
      raise ValueError("kernel='pallas' (the fused colour pass) does not support skip "
                       "connections; use kernel='xla'")
    self.dtype, self.precision = model.dtype, model.precision
    self.interpret = interpret
    m = model.extents[0]
    bias = jnp.stack([horizontal_bias(params[f"layers_{l}"]) for l in range(self.L)])
    self.bias = bias[:, None, :]                               # [L, 1, 2p]
    self.weights = [self._cut(params, c, m) for c in range(self.C)]

  def _slots(self, c_groups, width, slot):
    """Indices in the padded layout of the features of groups `c_groups`."""
    return np.concatenate([g * slot + np.arange(width) for g in c_groups]) \
        if len(c_groups) else np.zeros(0, int)

  def _block(self, w, rows_from, rows_to, cols_from, shape):
    """A zero [shape] array with w[rows_from, cols_from] at [rows_to, :len(cols)]."""
    out = jnp.zeros(shape, jnp.float32)
    if len(rows_from) == 0:
      return out
    return out.at[np.ix_(rows_to, np.arange(len(cols_from)))].set(
        w[np.ix_(rows_from, cols_from)])

  def _cut(self, params, c: int, m: int):
    P, G, S, L = self.P, self.G, self.S, self.L
    own_cols = c * P + np.arange(P)
    prev_groups = list(range(c))
    prev_from = np.arange(c * P)
    prev_to = self._slots(prev_groups, P, G)
    own_from, own_to = own_cols, np.arange(P)
    w = {k: [] for k in ("cen_prev", "cen_own", "out_prev", "out_own", "out_b")}
    for l in range(L):
      layer = params[f"layers_{l}"]
      centre = layer["h_conv"]["kernel"][0, m]
      halves_prev, halves_own = [], []
      for half in (0, 1):
        cols = half * self.p + own_cols
        if l == 0:  # The pixel's channels before c, at slots 0..c-1.
          halves_prev.append(self._block(centre, np.arange(c), np.arange(c), cols, (S, G)))
          halves_own.append(jnp.zeros((G, G), jnp.float32))
        else:
          halves_prev.append(self._block(centre, prev_from, prev_to, cols, (S, G)))
          halves_own.append(self._block(centre, own_from, own_to, cols, (G, G)))
      w["cen_prev"].append(jnp.stack(halves_prev))
      w["cen_own"].append(jnp.stack(halves_own))
      k = layer["h_out"]["kernel"]
      w["out_prev"].append(self._block(k, prev_from, prev_to, own_cols, (S, G)))
      w["out_own"].append(self._block(k, own_from, own_to, own_cols, (G, G)))
      w["out_b"].append(jnp.zeros((1, G)).at[0, :P].set(layer["h_out"]["bias"][own_cols]))
    pad = lambda xs: jnp.stack(xs + [jnp.zeros_like(xs[0])] * (self.Lp - L))
    cut = {k: pad(v).astype(jnp.float32 if k == "out_b" else self.dtype)
           for k, v in w.items()}
    hh, ho = params["head_hidden"], params["head_out"]
    Ph, Gh, Sh = self.Ph, self.Gh, self.Sh
    own_h = c * Ph + np.arange(Ph)
    cut["hh_prev"] = self._block(hh["kernel"], prev_from, prev_to, own_h, (S, Gh)).astype(
        self.dtype)
    cut["hh_own"] = self._block(hh["kernel"], own_from, own_to, own_h, (G, Gh)).astype(
        self.dtype)
    cut["hh_b"] = jnp.zeros((1, Gh)).at[0, :Ph].set(hh["bias"][own_h])
    levels = c * NUM_LEVELS + np.arange(NUM_LEVELS)
    cut["ho_prev"] = self._block(ho["kernel"], np.arange(c * Ph),
                                 self._slots(prev_groups, Ph, Gh), levels,
                                 (Sh, NUM_LEVELS)).astype(self.dtype)
    cut["ho_own"] = self._block(ho["kernel"], own_h, np.arange(Ph), levels,
                                (Gh, NUM_LEVELS)).astype(self.dtype)
    cut["ho_b"] = ho["bias"][levels][None]
    return cut

  def blocks(self, batch: int) -> tuple[int, int]:
    """(images per kernel instance, the batch padded to a multiple of it)."""
    block = batch_block(self.model, batch, self.max_block)
    return block, -(-batch // block) * block

  def start(self, batch: int):
    """A pixel's state: the drawn values (int32 [Bp, Cp]) and, normalised as
    the network's input, at slots 0..C-1 ("x"); each layer's output and gate
    output, and the head's hidden layer, in the padded layout. All are for
    the padded batch and filled one colour (group) per pass. Pass c reads
    only colours and groups < c, made by the same pixel's earlier passes, so
    one state is carried from pixel to pixel."""
    Bp = self.blocks(batch)[1]
    return {"x": jnp.zeros((Bp, self.S), jnp.float32),
            "drawn": jnp.zeros((Bp, self.Cp), jnp.int32),
            "out": jnp.zeros((self.Lp, Bp, self.S), self.dtype),
            "gated": jnp.zeros((self.Lp, Bp, self.S), self.dtype),
            "hidden": jnp.zeros((Bp, self.Sh), self.dtype)}

  def pad_batch(self, a, axis: int):
    """a with zeros appended along `axis`, the batch's, up to the padded batch."""
    widths = [(0, 0)] * a.ndim
    widths[axis] = (0, self.blocks(a.shape[axis])[1] - a.shape[axis])
    return jnp.pad(a, widths)

  def drawn(self, state, batch: int):
    """The pixel's drawn values, uint8 [B, C], once every pass has run."""
    return state["drawn"][:batch, :self.C].astype(jnp.uint8)

  def outputs(self, state, batch: int):
    """Each layer's whole output [B, p] once every pass has run."""
    idx = self._slots(range(self.C), self.P, self.G)
    return list(state["out"][:self.L, :batch, idx])

  def base(self, lefts_LB2p, links_LB2p):
    """Per layer, left taps + bias + link of every f and g column, in the
    padded layout, once per pixel for all its passes: float32 [Lp, Bp, 2, S]."""
    L, B = lefts_LB2p.shape[:2]
    pre = lefts_LB2p + self.bias + links_LB2p.astype(jnp.float32)
    pre = jnp.pad(pre.reshape(L, B, 2, self.C, self.P),
                  ((0, self.Lp - L), (0, self.blocks(B)[1] - B), (0, 0),
                   (0, self.S // self.G - self.C), (0, self.G - self.P)))
    return pre.reshape(self.Lp, -1, 2, self.S)

  @staticmethod
  def draw_constants(inv_temperature):
    """float32 [2, 256]: 1 / T in every column, then each level normalised as
    the network's input. The kernel looks a drawn level's value up rather
    than computing it, so that it has XLA's bits whether or not a compiler
    fuses normalize's multiply and add."""
    return jnp.stack([jnp.full((NUM_LEVELS,), inv_temperature, jnp.float32),
                      normalize(jnp.arange(NUM_LEVELS))])

  def colour(self, c: int, base, noise_CBK, constants_2K, state):
    """Pass c, from base (FusedPasses.base), and its draw with the noise of
    noise_CBK [C, Bp, 256] (GumbelDraw.forced_row_noise, padded) and
    constants_2K (draw_constants). The kernel writes group c and colour c
    into the state's own buffers (aliased) and returns the state."""
    Bp = state["x"].shape[0]
    Bb = self.blocks(Bp)[0]
    split = self.split and c > 0
    earlier = earlier_groups.terms(
        c, state, self.weights[c], dict(L=self.L, G=self.G, Gh=self.Gh, dtype=self.dtype,
                                        precision=self.precision, stages=self.num_stages,
                                        warps=self.num_warps),
        Bb, self.interpret) if split else []
    names = ("x", "drawn", "out", "gated", "hidden")
    new = self._call(c, Bb, Bp, split)(
        *[state[n] for n in names], base, noise_CBK, constants_2K, *earlier,
        *[self.weights[c][k] for k in self.WEIGHTS])
    return dict(zip(names, new))

  WEIGHTS = ("cen_prev", "cen_own", "out_prev", "out_own", "out_b",
             "hh_prev", "hh_own", "hh_b", "ho_prev", "ho_own", "ho_b")

  @functools.lru_cache(maxsize=None)
  def _call(self, c: int, Bb: int, Bp: int, split: bool):
    Lp, S, G, Sh, Gh = self.Lp, self.S, self.G, self.Sh, self.Gh
    full = lambda shape: pl.BlockSpec(shape, lambda b: (0,) * len(shape))
    batch_spec = lambda shape, axis: pl.BlockSpec(
        shape, lambda b: tuple(b if d == axis else 0 for d in range(len(shape))))
    state_specs = [batch_spec((Bb, S), 0), batch_spec((Bb, self.Cp), 0),
                   batch_spec((Lp, Bb, S), 1), batch_spec((Lp, Bb, S), 1),
                   batch_spec((Bb, Sh), 0)]
    noise_spec = pl.BlockSpec((1, Bb, NUM_LEVELS), lambda b: (c, b, 0))
    in_specs = [*state_specs, batch_spec((Lp, Bb, 2, S), 1), noise_spec,
                full((2, NUM_LEVELS))]
    if split:
      slots = earlier_groups.layer_slots(self.L)
      in_specs += [batch_spec((slots, Bb, 2, G), 1), batch_spec((slots, Bb, G), 1),
                   batch_spec((Bb, Gh), 0), batch_spec((Bb, NUM_LEVELS), 0)]
    in_specs += [full(self.weights[c][k].shape) for k in self.WEIGHTS]
    out_shape = [jax.ShapeDtypeStruct((Bp, S), jnp.float32),
                 jax.ShapeDtypeStruct((Bp, self.Cp), jnp.int32),
                 jax.ShapeDtypeStruct((Lp, Bp, S), self.dtype),
                 jax.ShapeDtypeStruct((Lp, Bp, S), self.dtype),
                 jax.ShapeDtypeStruct((Bp, Sh), self.dtype)]
    kernel = functools.partial(_pass_kernel, c=c, G=G, Gh=Gh, L=self.L, split=split,
                               dtype=self.dtype, precision=self.precision)
    return pl.pallas_call(kernel, out_shape=out_shape, grid=(Bp // Bb,),
                          in_specs=in_specs, out_specs=state_specs,
                          input_output_aliases={i: i for i in range(len(state_specs))},
                          compiler_params=(None if self.interpret
                                           else pltriton.CompilerParams(
                                               num_stages=self.num_stages,
                                               num_warps=self.num_warps)),
                          interpret=self.interpret)


def _pass_kernel(x_prev_ref, _, out_prev_ref, gated_prev_ref, hidden_prev_ref, base_ref,
                 noise_ref, constants_ref, *refs, c, G, Gh, L, split, dtype, precision):
  """All L layers' group c, the head's group c, colour c's logits and its
  draw, for a block of the batch. The refs: the state (FusedPasses.start;
  its drawn values are only written), the inputs, when `split` the terms
  from groups < c (earlier_groups.terms), the cut weights
  (FusedPasses.WEIGHTS), then the state's aliased outputs.

  Without `split` the pass makes those terms itself. A "prev" weight's rows
  are zero outside groups < c, so only those groups' slices are read: less
  work, and each dot's operands stay small enough for a GPU block's shared
  memory (a whole [S, 256] float32 head block is not).
  """
  earlier = refs[:4] if split else None
  (cen_prev, cen_own, o_prev, o_own, o_b, hh_prev, hh_own, hh_b, ho_prev, ho_own, ho_b,
   x_ref, drawn_ref, out_ref, gated_ref, hidden_ref) = refs[4 if split else 0:]
  dot, relu_dot = earlier_groups.dots(dtype, precision)
  add = lambda a, b: a if b is None else a + b
  f32 = lambda v: v.astype(jnp.float32)
  own_slots = pl.ds(c * G, G)  # Group c in the padded layout of base and the state.

  # The terms from groups < c: read from the earlier groups' kernel, or made
  # here one layer after the other, through the same sums (earlier_groups).
  if split:
    e_pre, e_out, e_hidden, e_logits = earlier
    first_terms = lambda h: e_pre[0, :, h, :]
    centre_terms = lambda l, h: e_pre[l, :, h, :]
    out_terms = lambda l: e_out[l]
    hidden_terms = lambda: e_hidden[...]
    logit_terms = lambda cols: e_logits[:, cols]
  else:
    first_terms, centre_terms, out_terms, hidden_terms, logit_terms = (
        earlier_groups.group_terms(c, G, Gh, L, x_prev_ref, out_prev_ref, gated_prev_ref,
                                   hidden_prev_ref, cen_prev, o_prev, hh_prev, ho_prev,
                                   dtype, precision))

  def layer(l, pres, own):
    """Layer l's group c from its two pre-activations (float32); own: the
    previous layer's group c (the residual), None for layer 0."""
    f, g = (p.astype(dtype) for p in pres)
    # Each op in float32 and rounded to the compute dtype, as XLA does for bf16
    # (and as Triton needs: its tanh takes float32).
    gated = (f32(jnp.tanh(f32(f)).astype(dtype))
             * f32(jax.nn.sigmoid(f32(g)).astype(dtype))).astype(dtype)
    out = add(dot(gated, o_own[l]), out_terms(l)).astype(dtype) + o_b[l].astype(dtype)
    if own is not None:
      out = out + own
    out_ref[l, :, own_slots] = out.astype(out_ref.dtype)
    gated_ref[l, :, own_slots] = gated.astype(gated_ref.dtype)
    return out

  # Layer 0 reads the pixel's channels before c (at slots 0..c-1) and has no
  # residual; layers 1.. are one loop, not unrolled, so that a deep model's
  # kernel stays small enough to compile in seconds.
  own = layer(0, [add(base_ref[0, :, h, own_slots], first_terms(h)) for h in (0, 1)], None)

  def body(l, own):
    pres = [add(base_ref[l, :, h, own_slots], centre_terms(l, h)) + dot(own, cen_own[l, h])
            for h in (0, 1)]
    return layer(l, pres, own)

  own = jax.lax.fori_loop(1, L, body, own)
  hidden = add(relu_dot(own, hh_own[...]), hidden_terms()
               ).astype(dtype) + hh_b[...].astype(dtype)
  hidden_ref[:, pl.ds(c * Gh, Gh)] = hidden.astype(hidden_ref.dtype)
  # The draw: the first level of the highest score, as jnp.argmax takes it,
  # over column blocks (for shared memory too), an earlier block winning ties.
  best = drawn = None
  for n in range(0, NUM_LEVELS, LOGIT_COLUMNS):
    cols = pl.ds(n, LOGIT_COLUMNS)
    logits = add(relu_dot(hidden, ho_own[:, cols]), logit_terms(cols)) + ho_b[:, cols]
    scores = gumbel_scores(logits, constants_ref[pl.ds(0, 1), cols], noise_ref[0, :, cols])
    top = jnp.max(scores, axis=1, keepdims=True)
    first = jnp.min(jnp.where(scores == top, _levels(n), NUM_LEVELS), axis=1, keepdims=True)
    if best is None:
      best, drawn = top, first
    else:
      better = top > best
      best, drawn = jnp.where(better, top, best), jnp.where(better, first, drawn)
  drawn_ref[:, pl.ds(c, 1)] = drawn
  x_ref[:, pl.ds(c, 1)] = sum(  # One term is not 0: it is the drawn level's value.
      jnp.sum(jnp.where(_levels(n) == drawn, constants_ref[pl.ds(1, 1), pl.ds(n, LOGIT_COLUMNS)],
                        0.0), axis=1, keepdims=True)
      for n in range(0, NUM_LEVELS, LOGIT_COLUMNS))


def _levels(n: int):
  """int32 [1, LOGIT_COLUMNS]: the levels of the column block from n."""
  return jnp.arange(LOGIT_COLUMNS, dtype=jnp.int32)[None, :] + n
