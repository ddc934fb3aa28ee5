"""The dots from earlier colour groups, for every layer at once (Pallas).

Colour pass c > 0 adds to each of its sums the dots from the colour groups
< c, which earlier passes of the pixel made: layer l's centre tap over layer
l-1's output (layer 0: over the pixel's colours < c), its output 1x1 over
its gate output, the head's hidden layer over the last layer's output, and
the logits over the hidden layer. None of them depends on pass c's own
chain through the layers, so this kernel makes them all between pass c-1
and pass c, one kernel instance per layer (and one for the head) in
parallel, where the pass's kernel would make them one layer after the other
(on a GPU, one instance at a small batch). The sums are the pass kernel's,
term for term (group_terms), so the draws do not change.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pixelcnn_jax.likelihood import NUM_LEVELS

LOGIT_COLUMNS = 64  # Logits per dot: a [Gh, 64] float32 block is at most 32 kB.


def group_sum(x_ref, w_ref, width, groups, mul, x_at=(), w_at=(), cols=slice(None)):
  """Sum over groups of mul(x_ref[x_at][:, group], w_ref[w_at][group, cols]),
  in the order of `groups`; None if there are none."""
  total = None
  for g in groups:
    rows = pl.ds(g * width, width)
    term = mul(x_ref[(*x_at, slice(None), rows)], w_ref[(*w_at, rows, cols)])
    total = term if total is None else total + term
  return total


def dots(dtype, precision):
  """(dot, and dot after a ReLU of its left side), both in the compute dtype
  and accumulated in float32."""
  def dot(a, b):
    return jnp.dot(a.astype(dtype), b, precision=precision, preferred_element_type=jnp.float32)
  return dot, lambda a, b: dot(jnp.maximum(a, 0), b)


def group_terms(c, G, Gh, L, x_ref, out_ref, gated_ref, hidden_ref, cen_prev, o_prev,
                hh_prev, ho_prev, dtype, precision):
  """Pass c's sums over groups < c, as functions of where they go: layer 0's
  centre tap (of gate half h), layer l's, layer l's output 1x1, the head's
  hidden layer, and the logits of columns `cols`. The refs are the pixel's
  state after pass c-1 and pass c's cut "prev" weights; both kernels make
  the terms through these, so that they are the same sums."""
  dot, relu_dot = dots(dtype, precision)
  return (
      lambda h: group_sum(x_ref, cen_prev, G, range(-(-c // G)), dot, w_at=(0, h)),
      lambda l, h: group_sum(out_ref, cen_prev, G, range(c), dot, x_at=(l - 1,), w_at=(l, h)),
      lambda l: group_sum(gated_ref, o_prev, G, range(c), dot, x_at=(l,), w_at=(l,)),
      lambda: group_sum(out_ref, hh_prev, G, range(c), relu_dot, x_at=(L - 1,)),
      lambda cols: group_sum(hidden_ref, ho_prev, Gh, range(c), relu_dot, cols=cols))


def layer_slots(num_layers: int) -> int:
  """The layer axis of the terms: a slot per layer and one for the head's
  kernel instance, padded to a power of two (Triton's blocks)."""
  return 1 << num_layers.bit_length()


def terms(c: int, state, weights, sizes: dict, block: int, interpret: bool):
  """Pass c's terms from groups < c, float32: [layer_slots, Bp, 2, G] for the
  centre taps' two gate halves, [layer_slots, Bp, G] for the output 1x1s,
  [Bp, Gh] for the hidden layer and [Bp, 256] for the logits. state: the
  pixel's (fused_pass.FusedPasses.start) after pass c-1; weights: pass c's
  cut (fused_pass.FusedPasses.WEIGHTS); sizes: L, G, Gh, dtype, precision
  and the pass kernel's Triton stages and warps (None: Triton's defaults),
  whose weight blocks these dots share; block: images per kernel instance."""
  args = (state["x"], state["out"], state["gated"], state["hidden"], weights["cen_prev"],
          weights["out_prev"], weights["hh_prev"], weights["ho_prev"])
  shapes = tuple(a.shape for a in args)
  return _call(c, block, shapes, interpret, **sizes)(*args)


@functools.lru_cache(maxsize=None)
def _call(c, Bb, shapes, interpret, *, L, G, Gh, dtype, precision, stages, warps):
  Bp = shapes[0][0]
  slots = layer_slots(L)
  full = lambda shape: pl.BlockSpec(shape, lambda l, b: (0,) * len(shape))
  batch = lambda shape, axis: pl.BlockSpec(
      shape, lambda l, b: tuple(b if d == axis else 0 for d in range(len(shape))))
  (_, S), (Lp, _, _), _, (_, Sh) = shapes[:4]
  in_specs = [batch((Bb, S), 0), batch((Lp, Bb, S), 1), batch((Lp, Bb, S), 1),
              batch((Bb, Sh), 0), *[full(shape) for shape in shapes[4:]]]
  # Instance (l, b) writes layer l's terms; instance (L, b) the head's.
  per_layer = lambda shape: pl.BlockSpec(
      shape, lambda l, b: (l, b) + (0,) * (len(shape) - 2))
  out_specs = [per_layer((1, Bb, 2, G)), per_layer((1, Bb, G)), batch((Bb, Gh), 0),
               batch((Bb, NUM_LEVELS), 0)]
  out_shape = [jax.ShapeDtypeStruct((slots, Bp, 2, G), jnp.float32),
               jax.ShapeDtypeStruct((slots, Bp, G), jnp.float32),
               jax.ShapeDtypeStruct((Bp, Gh), jnp.float32),
               jax.ShapeDtypeStruct((Bp, NUM_LEVELS), jnp.float32)]
  kernel = functools.partial(_kernel, c=c, G=G, Gh=Gh, L=L, dtype=dtype, precision=precision)
  # Triton's compiler params choose its lowering (the default is Mosaic GPU's).
  return pl.pallas_call(kernel, out_shape=out_shape, grid=(L + 1, Bp // Bb),
                        in_specs=in_specs, out_specs=out_specs, interpret=interpret,
                        compiler_params=None if interpret else pltriton.CompilerParams(
                            num_stages=stages, num_warps=warps))


def _kernel(x_ref, out_ref, gated_ref, hidden_ref, cen_prev, o_prev, hh_prev, ho_prev,
            pre_ref, lin_ref, hid_ref, log_ref, *, c, G, Gh, L, dtype, precision):
  """The inputs (a block of the pixel's state, then pass c's cut weights),
  then the terms (`terms`), for layer program_id(0), or the head's when it
  is L."""
  l = pl.program_id(0)
  first, centre, out, hidden, logits = group_terms(
      c, G, Gh, L, x_ref, out_ref, gated_ref, hidden_ref, cen_prev, o_prev, hh_prev, ho_prev,
      dtype, precision)

  @pl.when(l == 0)
  def _():
    for h in (0, 1):  # The pixel's colours < c, at slots 0..c-1.
      pre_ref[0, :, h, :] = first(h)

  @pl.when((l > 0) & (l < L))
  def _():
    for h in (0, 1):
      pre_ref[0, :, h, :] = centre(l, h)

  @pl.when(l < L)
  def _():
    lin_ref[0] = out(l)

  @pl.when(l == L)
  def _():
    hid_ref[...] = hidden()
    for n in range(0, NUM_LEVELS, LOGIT_COLUMNS):
      cols = pl.ds(n, LOGIT_COLUMNS)
      log_ref[:, cols] = logits(cols)
