"""The vertical stack's forward pass as one Pallas kernel, against cuDNN and XLA.

  python experiments/bench_gate_conv.py [--batch=256] [--size=32] [--features=132]
      [--align=32] [--kernel=3] [--configs=128x32x4x3,...] [--steps=20] [--out=FILE]

What #9 asks of a convolution that computes the gate on chip, measured
before building one into the model: one layer's vertical convolution
(k//2 + 1 rows of k taps, the bias folded from the input's ones channel) and
its gate, y = tanh(f) * sigmoid(g), with the pre-activation kept for the
backward pass, on the layout the model keeps between kernels (channels
aligned, the next convolution's zero padding written around y).

- "xla": what the model compiles to: cuDNN's convolution, then XLA's fusion
  of the gate and of the pad for the next layer.
- "cudnn conv only": the convolution alone, for scale.
- "pallas BMxBNxWARPSxSTAGES": one Triton kernel. Images are kept flat on
  the padded grid, [B * (H + m) * (W + k - 1), C], so that every tap is the
  same rows shifted by a constant: an implicit GEMM whose A blocks are plain
  row ranges, and whose output, written on the same grid, is already the
  next layer's padded input (the grid's extra rows and columns written as
  zeros, the ones channel as ones). Each instance makes a BM-row block of
  f's and g's BN-column tiles and gates them in registers.

Each case: the mean of --steps calls after compilation, issued back to
back; the largest differences from "xla" of y (over the padded grid) and of
f (inside the image); and the convolution's rate (2 FLOPs per kernel weight
per output position inside the image).
Without a GPU the kernel runs in Pallas's interpreter (a check, not a time).
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


def grid_shape(size: int, kernel: int) -> tuple[int, int]:
  """(rows, columns) of the padded grid: m rows above, k // 2 columns each side."""
  m = kernel // 2
  return size + m, size + 2 * m


def flat_input(x_BHWC, kernel: int, extra: int):
  """x padded onto the grid, flattened to [B * rows * cols + extra, C]."""
  m = kernel // 2
  x = jnp.pad(x_BHWC, ((0, 0), (m, 0), (m, m), (0, 0)))
  flat = x.reshape(-1, x.shape[-1])
  return jnp.pad(flat, ((0, extra), (0, 0)))


def xla_forward(x_BHWC, w_TTCN, features: int, out_width: int):
  """cuDNN's convolution on the padded input, then the gate and the next
  layer's padding (ones channel at `features`) in XLA's fusions."""
  m = w_TTCN.shape[1] // 2
  x = jnp.pad(x_BHWC, ((0, 0), (m, 0), (m, m), (0, 0)))
  pre = jax.lax.conv_general_dilated(x, w_TTCN, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  f, g, _ = jnp.split(pre, [features, 2 * features], axis=-1)
  y = jnp.tanh(f) * jax.nn.sigmoid(g)
  one_hot = np.zeros(out_width, np.float32)
  one_hot[features:features + 1] = 1
  y = jnp.pad(y, ((0, 0), (0, 0), (0, 0), (0, out_width - features))) + one_hot.astype(y.dtype)
  y = jnp.pad(y, ((0, 0), (m, 0), (m, m), (0, 0)))
  return y, pre


def split_kernel(w_TTCN, features: int, out_width: int):
  """[taps, C, out_width] kernels of f and of g, zero past `features`."""
  kh, kw, c, _ = w_TTCN.shape
  w = w_TTCN.reshape(kh * kw, c, -1)
  pad = ((0, 0), (0, 0), (0, out_width - features))
  return (jnp.pad(w[..., :features], pad), jnp.pad(w[..., features:2 * features], pad))


def _kernel(x_ref, wf_ref, wg_ref, y_ref, pf_ref, pg_ref, *, BM, BN, BK, kh, kw, rows,
            cols, size, features, shift):
  i, j = pl.program_id(0), pl.program_id(1)
  o0 = i * BM
  chunks = x_ref.shape[1] // BK

  def body(s, accs):
    acc_f, acc_g = accs
    # lax's div and rem, not jnp's // and %, whose sign handling Triton's
    # lowering does not take; every operand here is non-negative.
    t, k = jax.lax.div(s, chunks), jax.lax.rem(s, chunks)
    a = x_ref[pl.ds(o0 + jax.lax.div(t, kw) * cols + jax.lax.rem(t, kw), BM), pl.ds(k * BK, BK)]
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
  o = o0 + jax.lax.broadcasted_iota(jnp.int32, (BM, BN), 0)
  channel = j * BN + jax.lax.broadcasted_iota(jnp.int32, (BM, BN), 1)
  y = jnp.where(channel == features, 1.0, y)
  row = jax.lax.div(jax.lax.rem(o, rows * cols), cols)
  y = jnp.where(row < size, jnp.where(jax.lax.rem(o, cols) < size, y, 0.0), 0.0)
  y_ref[pl.ds(o0 + shift, BM), pl.ds(j * BN, BN)] = y.astype(dtype)


@functools.partial(jax.jit, static_argnames=("features", "out_width", "config", "interpret"))
def pallas_forward(x_BHWC, w_TTCN, features: int, out_width: int, config: tuple,
                   interpret: bool = False):
  """(y on the next layer's padded grid, f, g) from one kernel; config:
  (BM, BN, warps, stages)."""
  BM, BN, warps, stages = config
  B, size, _, C = x_BHWC.shape
  kh, kw = w_TTCN.shape[:2]
  rows, cols = grid_shape(size, kw)
  M = -(-B * rows * cols // BM) * BM
  shift = (kw // 2) * cols + kw // 2
  x = flat_input(x_BHWC, kw, M - B * rows * cols + (kh - 1) * cols + kw)
  wf, wg = split_kernel(w_TTCN, features, out_width)
  dtype = x_BHWC.dtype
  block = pl.BlockSpec((BM, BN), lambda i, j: (i, j))
  kernel = functools.partial(_kernel, BM=BM, BN=BN, BK=min(32, C), kh=kh, kw=kw, rows=rows,
                             cols=cols, size=size, features=features, shift=shift)
  y, f, g = pl.pallas_call(
      kernel, grid=(M // BM, out_width // BN),
      in_specs=[pl.BlockSpec()] * 3, out_specs=[pl.BlockSpec(), block, block],
      out_shape=[jax.ShapeDtypeStruct((M + 2 * shift, out_width), dtype),
                 jax.ShapeDtypeStruct((M, out_width), dtype),
                 jax.ShapeDtypeStruct((M, out_width), dtype)],
      compiler_params=None if interpret else pltriton.CompilerParams(num_warps=warps,
                                                                     num_stages=stages),
      interpret=interpret)(x, wf, wg)
  return y, f, g


def inside_grid(y_flat, B: int, size: int, kernel: int):
  """[B, size, size, C]: the image's positions of a flat padded-grid tensor
  whose position (r, c) sits at row r * cols + c of each image's block."""
  rows, cols = grid_shape(size, kernel)
  return y_flat[:B * rows * cols].reshape(B, rows, cols, -1)[:, :size, :size]


def parse_config(text: str) -> tuple:
  """BMxBNxWARPSxSTAGES: the first three powers of two (Triton's blocks and
  warps), the last >= 1."""
  parts = text.split("x")
  values = [int(v) for v in parts if v.isdigit()]
  if (len(parts) != 4 or len(values) != 4 or min(values) < 1
      or any(v & (v - 1) for v in values[:3])):
    raise SystemExit(f"--configs: comma-separated BMxBNxWARPSxSTAGES, the first three "
                     f"powers of two, e.g. 128x32x4x3, got {text!r}")
  return tuple(values)


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


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--size", type=int, default=32)
  ap.add_argument("--features", type=int, default=132)
  ap.add_argument("--align", type=int, default=32)
  ap.add_argument("--kernel", type=int, default=3)
  ap.add_argument("--configs", default="128x32x4x3,128x32x4x4,256x32x8x4")
  ap.add_argument("--steps", type=int, default=50)
  ap.add_argument("--out", default=None)
  args = ap.parse_args()
  configs = [parse_config(c) for c in args.configs.split(",")]
  for flag in ("batch", "size", "features", "align", "steps"):
    if getattr(args, flag) < 1:
      raise SystemExit(f"--{flag}: an integer >= 1, got {getattr(args, flag)}")
  if args.kernel < 3 or args.kernel % 2 == 0:
    raise SystemExit(f"--kernel: odd and >= 3, got {args.kernel}")
  on_gpu = jax.default_backend() == "gpu"
  B, size, p, k = args.batch, args.size, args.features, args.kernel
  x, w, width = inputs(B, size, p, args.align, k)
  macs = (k // 2 + 1) * k * width * 2 * p * B * size ** 2
  xla = jax.jit(functools.partial(xla_forward, features=p, out_width=width))
  conv = jax.jit(lambda x, w: xla_forward(x, w, p, width)[1])
  y_xla, pre_xla = xla(x, w)
  grid_rows, cols = grid_shape(size, k)
  shift = (k // 2) * cols + k // 2
  # The whole padded grid but its first `shift` rows, which no block writes
  # (a model would keep them zero from the buffer it starts with).
  y_xla = y_xla.reshape(-1, width)[shift:].astype(jnp.float32)
  f_xla = pre_xla[..., :p].astype(jnp.float32)
  results = []
  cases = ([("xla", None), ("cudnn conv only", None)]
           + [("pallas " + "x".join(map(str, c)), c) for c in configs])
  for name, config in cases:
    diff_y = diff_f = 0.0
    if config is None:
      fn = functools.partial(conv if name.startswith("cudnn") else xla, x, w)
    elif width % config[1]:
      print(f"{name}: skipped, BN does not divide the aligned width {width}")
      continue
    else:
      fn = functools.partial(pallas_forward, x, w, p, width, config, not on_gpu)
      try:
        y_flat, f_flat, _ = fn()
      except Exception as e:  # A block past the GPU's shared memory, say.
        print(f"{name}: failed: {str(e).splitlines()[0][:200]}")
        continue
      y = y_flat[shift:B * grid_rows * cols].astype(jnp.float32)
      f = inside_grid(f_flat, B, size, k)[..., :p].astype(jnp.float32)
      diff_y = float(jnp.max(jnp.abs(y - y_xla)))
      diff_f = float(jnp.max(jnp.abs(f - f_xla)))
    seconds = timed(fn, args.steps) if on_gpu else float("nan")
    row = {"case": name, "ms": seconds * 1e3, "tflops": 2 * macs / seconds / 1e12,
           "max_diff_y": diff_y, "max_diff_f": diff_f, "batch": B, "size": size,
           "features": p, "width": width, "kernel": k, "device": jax.devices()[0].device_kind,
           "date": datetime.date.today().isoformat(), "jax": jax.__version__}
    results.append(row)
    print(f"{name:24s} {row['ms']:8.3f} ms {row['tflops']:7.1f} TFLOP/s  "
          f"max |y - xla| {diff_y:.4f}  max |f - xla| {diff_f:.4f}")
  if args.out:
    with open(args.out, "w") as f:
      f.writelines(json.dumps(row) + "\n" for row in results)


if __name__ == "__main__":
  main()
