"""The vertical stack's forward pass as one kernel, against cuDNN and XLA.

  python experiments/bench_gate_conv.py [--batch=256] [--size=32] [--features=132]
      [--align=32] [--kernel=3] [--configs=128x32x4x3,...] [--mosaic=64x32x5,...]
      [--batch_minor] [--aligned_taps] [--dx0_only] [--warpgroup] [--nhwc] [--steps=50]
      [--out=FILE]

What #9 asks of a convolution that computes the gate on chip, measured
before building one into the model: one layer's vertical convolution
(k//2 + 1 rows of k taps, the bias folded from the input's ones channel) and
its gate, y = tanh(f) * sigmoid(g), with the pre-activation kept for the
backward pass.

- "xla": what the model compiles to: cuDNN's convolution, then XLA's fusion
  of the gate and of the pad for the next layer.
- "cudnn conv only": the convolution alone, for scale.
- The fused kernels keep images flat on the padded grid, [B * (H + m) *
  (W + k - 1), C], so that every tap is the same rows shifted by a
  constant: an implicit GEMM over plain row blocks. With --batch_minor the
  grid holds the batch inside each position, [(H + m) * (W + k - 1) * B,
  C], so that every shift is a multiple of B. They are timed on operands
  already in that layout, which a model would keep between layers.
- "triton BMxBNxWARPSxSTAGES": one Triton kernel through Pallas. Each
  instance makes a BM-row block of f's and g's BN-column tiles and gates
  them in registers. Its y, written on the same grid, is already the next
  layer's padded input: zeros outside the image, ones in the ones channel.
- "mosaic TILE_MxTILE_KxSTAGES": one Mosaic GPU kernel (Hopper: TMA copies,
  wgmma, warp-specialised; gate_conv_mosaic.py). It leaves the grid's pads
  to its caller. Options:
  - image by image, Mosaic copies only the taps at 8-row offsets correctly;
    with --batch_minor (B a multiple of 8) it copies every tap correctly;
  - --aligned_taps rounds every tap's row offset down to a multiple of 8 (its
    sums are then wrong: a timing);
  - --dx0_only zeroes every kernel's taps off the centre column, for every
    case, so that the offsets are multiples of the grid's width;
  - --warpgroup uses Mosaic's Warpgroup semantics rather than Lane;
  - --nhwc times conv_gate_nhwc instead: images in the model's layout,
    unpadded, the pre-activation as `halves`, each half aligned to half of
    --align; of each config only STAGES counts (its tiles are 64 x 32).

Each case gives:
- the mean of --steps calls after compilation, issued back to back;
- the largest difference from "xla" of y, over the padded grid for Triton
  and inside the image for Mosaic;
- the largest difference of f, inside the image;
- the convolution's rate: 2 FLOPs per kernel weight per output position
  inside the image.

Without a GPU, the Triton kernel runs in Pallas's interpreter, as a check
and not a time, and the Mosaic cases are skipped.
"""

import argparse
import datetime
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

import gate_conv_mosaic


def grid_shape(size: int, kernel: int) -> tuple[int, int]:
  """(rows, columns) of the padded grid: m rows above, k // 2 columns each side."""
  m = kernel // 2
  return size + m, size + 2 * m


def on_grid(x_BHWC, kernel: int):
  """x with the grid's zeros around it: m rows above, m columns each side."""
  m = kernel // 2
  return jnp.pad(x_BHWC, ((0, 0), (m, 0), (m, m), (0, 0)))


def flat_input(x_BHWC, kernel: int, extra: int, batch_minor: bool = False):
  """x padded onto the grid, flattened to [B * rows * cols + extra, C]: image
  by image, or with `batch_minor` position by position, the batch inside."""
  x = on_grid(x_BHWC, kernel)
  if batch_minor:
    x = x.transpose(1, 2, 0, 3)
  return jnp.pad(x.reshape(-1, x.shape[-1]), ((0, extra), (0, 0)))


def xla_forward(x_BHWC, w_TTCN, features: int, out_width: int):
  """cuDNN's convolution on the padded input, then the gate and the next
  layer's padding (ones channel at `features`) in XLA's fusions."""
  kernel = w_TTCN.shape[1]
  pre = jax.lax.conv_general_dilated(on_grid(x_BHWC, kernel), w_TTCN, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  f, g, _ = jnp.split(pre, [features, 2 * features], axis=-1)
  y = jnp.tanh(f) * jax.nn.sigmoid(g)
  one_hot = np.zeros(out_width, np.float32)
  one_hot[features:features + 1] = 1
  y = jnp.pad(y, ((0, 0), (0, 0), (0, 0), (0, out_width - features))) + one_hot.astype(y.dtype)
  return on_grid(y, kernel), pre


def halves(w, features: int, half: int):
  """[f | g] on the last axis as [f, zeros, g, zeros], each half `half` wide:
  the layout in which conv_gate_nhwc gates its two accumulators."""
  pad = [(0, 0)] * (w.ndim - 1) + [(0, half - features)]
  return jnp.concatenate([jnp.pad(w[..., :features], pad), jnp.pad(w[..., features:], pad)], -1)


def split_kernel(w_TTCN, features: int, out_width: int):
  """[taps, C, out_width] kernels of f and of g, zero past `features`."""
  kh, kw, c, _ = w_TTCN.shape
  w = w_TTCN.reshape(kh * kw, c, -1)
  pad = ((0, 0), (0, 0), (0, out_width - features))
  return (jnp.pad(w[..., :features], pad), jnp.pad(w[..., features:2 * features], pad))


def _triton_kernel(x_ref, wf_ref, wg_ref, y_ref, pf_ref, pg_ref, *, BM, BN, BK, kh, kw, rows,
                   cols, stride, size, features, shift):
  i, j = pl.program_id(0), pl.program_id(1)
  o0 = i * BM
  chunks = x_ref.shape[1] // BK

  def body(s, accs):
    acc_f, acc_g = accs
    # lax's div and rem, not jnp's // and %, whose sign handling Triton's
    # lowering does not take; every operand here is non-negative.
    t, k = jax.lax.div(s, chunks), jax.lax.rem(s, chunks)
    offset = (jax.lax.div(t, kw) * cols + jax.lax.rem(t, kw)) * stride
    a = x_ref[pl.ds(o0 + offset, BM), pl.ds(k * BK, BK)]
    n = pl.ds(j * BN, BN)
    dot = functools.partial(jnp.dot, preferred_element_type=jnp.float32)
    acc_f += dot(a, wf_ref[t, pl.ds(k * BK, BK), n])
    acc_g += dot(a, wg_ref[t, pl.ds(k * BK, BK), n])
    return acc_f, acc_g

  zeros = jnp.zeros((BM, BN), jnp.float32)
  acc_f, acc_g = jax.lax.fori_loop(0, kh * kw * chunks, body, (zeros, zeros))
  pf_ref[...] = acc_f.astype(pf_ref.dtype)
  pg_ref[...] = acc_g.astype(pg_ref.dtype)
  dtype = y_ref.dtype
  y = (jnp.tanh(acc_f.astype(dtype).astype(jnp.float32)).astype(dtype).astype(jnp.float32)
       * jax.nn.sigmoid(acc_g.astype(dtype).astype(jnp.float32)).astype(dtype).astype(jnp.float32))
  # This block's output positions on the grid; the next layer reads the ones
  # written `shift` rows on, so positions outside the image become its zeros.
  o = jax.lax.div(o0 + jax.lax.broadcasted_iota(jnp.int32, (BM, BN), 0), stride)
  channel = j * BN + jax.lax.broadcasted_iota(jnp.int32, (BM, BN), 1)
  y = jnp.where(channel == features, 1.0, y)
  row = jax.lax.div(jax.lax.rem(o, rows * cols), cols)
  y = jnp.where(row < size, jnp.where(jax.lax.rem(o, cols) < size, y, 0.0), 0.0)
  y_ref[pl.ds(o0 + shift, BM), pl.ds(j * BN, BN)] = y.astype(dtype)


def flat_operands(x_BHWC, w_TTCN, features: int, width: int, block_m: int,
                  batch_minor: bool = False):
  """(x flat on the padded grid with enough rows past the last block's taps,
  its kernel as [taps, C, width] for f and for g, the output's row count): the
  layout the fused kernels read, which a model would keep between layers."""
  B, size = x_BHWC.shape[:2]
  kh, kw = w_TTCN.shape[:2]
  rows, cols = grid_shape(size, kw)
  M = -(-B * rows * cols // block_m) * block_m
  extra = M - B * rows * cols + ((kh - 1) * cols + kw) * (B if batch_minor else 1) + block_m
  extra += -(B * rows * cols + extra) % 8  # Whole 8-row tiles, for Mosaic's copies.
  return (flat_input(x_BHWC, kw, extra, batch_minor), split_kernel(w_TTCN, features, width),
          M)


@functools.partial(jax.jit, static_argnames=("M", "size", "kernel", "features", "config",
                                             "stride", "interpret"))
def triton_forward(x_flat, wf, wg, M: int, size: int, kernel: int, features: int,
                   config: tuple, stride: int = 1, interpret: bool = False):
  """(y on the next layer's padded grid, f, g) from one Triton kernel;
  config: (BM, BN, warps, stages); stride: rows between grid positions (the
  batch, for a batch-minor grid)."""
  BM, BN, warps, stages = config
  C, width = wf.shape[1:]
  kh, kw = kernel // 2 + 1, kernel
  rows, cols = grid_shape(size, kw)
  shift = ((kw // 2) * cols + kw // 2) * stride
  dtype = x_flat.dtype
  block = pl.BlockSpec((BM, BN), lambda i, j: (i, j))
  body = functools.partial(_triton_kernel, BM=BM, BN=BN, BK=min(32, C), kh=kh, kw=kw,
                           rows=rows, cols=cols, stride=stride, size=size, features=features,
                           shift=shift)
  return pl.pallas_call(
      body, grid=(M // BM, width // BN),
      in_specs=[pl.BlockSpec()] * 3, out_specs=[pl.BlockSpec(), block, block],
      out_shape=[jax.ShapeDtypeStruct((M + 2 * shift, width), dtype),
                 jax.ShapeDtypeStruct((M, width), dtype),
                 jax.ShapeDtypeStruct((M, width), dtype)],
      compiler_params=None if interpret else pltriton.CompilerParams(num_warps=warps,
                                                                     num_stages=stages),
      interpret=interpret)(x_flat, wf, wg)


def inside_grid(y_flat, B: int, size: int, kernel: int, batch_minor: bool = False):
  """[B, size, size, C]: the image's positions of a flat padded-grid tensor
  (flat_input's order)."""
  rows, cols = grid_shape(size, kernel)
  if batch_minor:
    return y_flat[:B * rows * cols].reshape(rows, cols, B, -1)[:size, :size].transpose(
        2, 0, 1, 3)
  return y_flat[:B * rows * cols].reshape(B, rows, cols, -1)[:, :size, :size]


def parse_configs(text: str, flag: str, form: str, example: str) -> list[tuple]:
  """Comma-separated AxBx...: `form` names the parts; all but the last
  powers of two (Triton's blocks and warps, Mosaic's tiles), the last >= 1."""
  configs = []
  for item in filter(None, text.split(",")):
    parts = item.split("x")
    values = [int(v) for v in parts if v.isdigit()]
    if (len(parts) != form.count("x") + 1 or len(values) != len(parts) or min(values) < 1
        or any(v & (v - 1) for v in values[:-1])):
      raise SystemExit(f"{flag}: comma-separated {form}, all but the last powers of two, "
                       f"e.g. {example}, got {item!r}")
    configs.append(tuple(values))
  return configs


def timed(fn, steps: int) -> float:
  """Seconds a call, from `steps` calls issued back to back and waited for
  once, so that the host's dispatch hides behind the device's work."""
  jax.block_until_ready(fn())
  t0 = time.perf_counter()
  out = [fn() for _ in range(steps)]
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / steps


def inputs(batch: int, size: int, p: int, align: int, kernel: int):
  """(x, w, the aligned width): random x at that width, with its ones channel
  at p where there is room, and a vertical kernel to 2p channels aligned
  likewise, whose columns past 2p are zero."""
  width, pre_width = (-(-n // align) * align for n in (p, 2 * p))
  key_x, key_w = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (batch, size, size, width), jnp.float32).at[..., p:].set(0)
  x = (x.at[..., p].set(1) if width > p else x).astype(jnp.bfloat16)
  w = (jax.random.normal(key_w, (kernel // 2 + 1, kernel, width, pre_width), jnp.float32)
       * (kernel * width) ** -0.5)
  return x, w.at[..., 2 * p:].set(0).astype(jnp.bfloat16), width


def layer_parser(description: str) -> argparse.ArgumentParser:
  """A parser for the layer's shape and --steps, --out, which every script
  that times one layer's kernels takes; check_layer_args checks them."""
  ap = argparse.ArgumentParser(description=description)
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--size", type=int, default=32)
  ap.add_argument("--features", type=int, default=132)
  ap.add_argument("--align", type=int, default=32)
  ap.add_argument("--kernel", type=int, default=3)
  ap.add_argument("--steps", type=int, default=50)
  ap.add_argument("--out", default=None, help="a file that each run adds its JSON lines to")
  return ap


def check_layer_args(args) -> None:
  for flag in ("batch", "size", "features", "align", "steps"):
    if getattr(args, flag) < 1:
      raise SystemExit(f"--{flag}: an integer >= 1, got {getattr(args, flag)}")
  if args.kernel < 3 or args.kernel % 2 == 0:
    raise SystemExit(f"--kernel: odd and >= 3, got {args.kernel}")


def main():
  ap = layer_parser(__doc__.splitlines()[0])
  ap.add_argument("--configs", default="128x32x4x3,128x32x4x4")
  ap.add_argument("--mosaic", default="64x32x5")
  ap.add_argument("--aligned_taps", action="store_true")
  ap.add_argument("--dx0_only", action="store_true")
  ap.add_argument("--warpgroup", action="store_true")
  ap.add_argument("--nhwc", action="store_true")
  ap.add_argument("--batch_minor", action=argparse.BooleanOptionalAction, default=False)
  args = ap.parse_args()
  configs = parse_configs(args.configs, "--configs", "BMxBNxWARPSxSTAGES", "128x32x4x3")
  mosaic = parse_configs(args.mosaic, "--mosaic", "TILE_MxTILE_KxSTAGES", "64x32x5")
  check_layer_args(args)
  on_gpu = jax.default_backend() == "gpu"
  B, size, p, k = args.batch, args.size, args.features, args.kernel
  x, w, width = inputs(B, size, p, args.align, k)
  if args.dx0_only:  # Every tap's row offset a multiple of the grid's width.
    w = w.at[:, 1:].set(0)
  macs = (k // 2 + 1) * k * width * 2 * p * B * size ** 2
  xla = jax.jit(functools.partial(xla_forward, features=p, out_width=width))
  conv = jax.jit(lambda x, w: xla_forward(x, w, p, width)[1])
  y_xla, pre_xla = xla(x, w)
  grid_rows, cols = grid_shape(size, k)
  stride = B if args.batch_minor else 1  # Rows between the grid's positions.
  shift = ((k // 2) * cols + k // 2) * stride
  # The whole padded grid but its first `shift` rows, which no block writes
  # (a model would keep them zero from the buffer it starts with).
  y_grid = y_xla.transpose(1, 2, 0, 3) if args.batch_minor else y_xla
  y_grid = y_grid.reshape(-1, width)[shift:].astype(jnp.float32)
  y_inside = y_xla[:, k // 2:, k // 2:size + k // 2, :p].astype(jnp.float32)
  f_inside = pre_xla[..., :p].astype(jnp.float32)
  diff = lambda a, b: float(jnp.max(jnp.abs(a.astype(jnp.float32) - b)))

  def triton_case(config):
    x_flat, (wf, wg), M = flat_operands(x, w, p, width, config[0], args.batch_minor)
    fn = functools.partial(triton_forward, x_flat, wf, wg, M, size, k, p, config, stride,
                           not on_gpu)
    y_flat, f_flat, _ = fn()
    return fn, diff(y_flat[shift:B * grid_rows * cols], y_grid), diff(
        inside_grid(f_flat, B, size, k, args.batch_minor)[..., :p], f_inside)

  def mosaic_case(config):
    tile_m, tile_k, stages = config
    if args.nhwc:
      half_align = max(args.align // 2, 1)  # Two halves take the aligned 2p.
      half = -(-p // half_align) * half_align
      fn = functools.partial(jax.jit(functools.partial(
          gate_conv_mosaic.conv_gate_nhwc, features=p, half=half, out_width=width,
          stages=stages)), x, halves(w[..., :2 * p], p, half))
      y, pre = fn()
      return fn, diff(y[..., :p], y_inside), diff(pre[..., :p], f_inside)
    x_flat, (wf, wg), M = flat_operands(x, w, p, width, 2 * tile_m, args.batch_minor)
    w_KN = jnp.concatenate([wf, wg], -1).reshape(-1, 2 * width)
    fn = functools.partial(jax.jit(functools.partial(
        gate_conv_mosaic.conv_gate, rows_out=M, kernel=k, cols=cols, width=width,
        tile_m=tile_m, tile_k=tile_k, stages=stages, stride=stride,
        aligned_taps=args.aligned_taps, lane=not args.warpgroup)), x_flat, w_KN)
    pre, y = fn()
    return fn, diff(inside_grid(y, B, size, k, args.batch_minor)[..., :p], y_inside), diff(
        inside_grid(pre[:, :width], B, size, k, args.batch_minor)[..., :p], f_inside)

  results = []
  cases = ([("xla", None, None), ("cudnn conv only", None, None)]
           + [("triton " + "x".join(map(str, c)), triton_case, c) for c in configs]
           + [("mosaic " + "x".join(map(str, c)), mosaic_case, c) for c in mosaic])
  for name, case, config in cases:
    diff_y = diff_f = 0.0
    if case is None:
      fn = functools.partial(conv if name.startswith("cudnn") else xla, x, w)
    elif width % config[1]:
      print(f"{name}: skipped, {config[1]} does not divide the aligned width {width}")
      continue
    elif case is mosaic_case and not on_gpu:
      print(f"{name}: skipped, Mosaic GPU needs a Hopper GPU")
      continue
    else:
      try:
        fn, diff_y, diff_f = case(config)
      except Exception as e:  # A block past the GPU's shared memory, or refused.
        print(f"{name}: failed: {(str(e).splitlines() or [repr(e)])[0][:300]}")
        continue
    seconds = timed(fn, args.steps) if on_gpu else float("nan")
    row = {"case": name, "ms": seconds * 1e3, "tflops": 2 * macs / seconds / 1e12,
           "max_diff_y": diff_y, "max_diff_f": diff_f, "batch": B, "size": size,
           "features": p, "width": width, "kernel": k, "aligned_taps": args.aligned_taps,
           "dx0_only": args.dx0_only, "warpgroup": args.warpgroup,
           "batch_minor": args.batch_minor, "nhwc": args.nhwc,
           "device": jax.devices()[0].device_kind,
           "date": datetime.date.today().isoformat(), "jax": jax.__version__}
    results.append(row)
    print(f"{name:24s} {row['ms']:8.3f} ms {row['tflops']:7.1f} TFLOP/s  "
          f"max |y - xla| {diff_y:.4f}  max |f - xla| {diff_f:.4f}")
  if args.out:
    with open(args.out, "a") as f:
      f.writelines(json.dumps(row) + "\n" for row in results)


if __name__ == "__main__":
  main()
