"""A layer's two shifted convolutions, each pass alone, in several formulations.

  python experiments/bench_layer_convs.py [--batch=256] [--size=32] [--features=132]
      [--align=32] [--kernel=3] [--forms=conv,conv1d,im2col,outshift] [--steps=50]
      [--out=FILE]

The step's profile names cuDNN kernels, not which convolution each ran, so it
cannot say whether the vertical (k//2+1 x k) or the horizontal (1 x k//2+1)
convolution falls short of the card. This times each of them alone, at the
model's aligned widths (input width(p), output width(2p)) and in bf16: its
forward pass, its input gradient and its kernel gradient, each a jitted
function of its own, and each against two floors: its FLOPs at the card's
bf16 matrix rate (--tflops) and its operands' and result's bytes at its
memory rate (--tbps).

Formulations (all compute the same sums, for paddings that keep the image's
size as the model's whole-image passes do; the differences from "conv" are
printed):
- conv: lax.conv_general_dilated, as the model calls it (cuDNN on a GPU);
- conv1d: the horizontal one as a 1D convolution over [B * H, W, C] rows;
- im2col: one GEMM over the taps' shifted copies side by side;
- outshift: the horizontal one as one GEMM x @ [W_0 | ... | W_{k-1}], its
  output blocks shifted and summed (the shift moves to the output side).
"""

import functools

import jax
import jax.numpy as jnp

from bench_gate_conv import check_layer_args, layer_parser, timed
from profile_train import write_summary

FORMS = ("conv", "conv1d", "im2col", "outshift")


def conv(x, w, padding):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv1d(x, w, padding):
  B, H, W, C = x.shape
  y = jax.lax.conv_general_dilated(x.reshape(B * H, W, C), w[0], (1,), padding[1:],
                                   dimension_numbers=("NWC", "WIO", "NWC"))
  return y.reshape(B, H, W, -1)


def taps(x, w, padding):
  """The kernel's taps' shifted copies of x, [..., taps * C]."""
  B, H, W, _ = x.shape
  kh, kw = w.shape[:2]
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  return jnp.concatenate([xp[:, i:i + H, j:j + W] for i in range(kh) for j in range(kw)], -1)


def im2col(x, w, padding):
  return jnp.einsum("bhwk,ko->bhwo", taps(x, w, padding), w.reshape(-1, w.shape[-1]))


def outshift(x, w, padding):
  kw, N, W = w.shape[1], w.shape[-1], x.shape[2]
  z = jnp.einsum("bhwc,cto->bhwto", x, w[0].transpose(1, 0, 2))
  zp = jnp.pad(z, ((0, 0), (0, 0), padding[1], (0, 0), (0, 0)))
  return sum(zp[:, :, t:t + W, t] for t in range(kw)).reshape(*x.shape[:3], N)


def passes(form, x, w, padding):
  """{pass: jitted function of no arguments} for one formulation."""
  fn = functools.partial(globals()[form], padding=padding)
  dy = jnp.ones(jax.eval_shape(fn, x, w).shape, x.dtype)
  return {
      "forward": functools.partial(jax.jit(fn), x, w),
      "input grad": functools.partial(jax.jit(
          lambda w, dy: jax.linear_transpose(lambda x: fn(x, w), x)(dy)[0]), w, dy),
      "kernel grad": functools.partial(jax.jit(
          lambda x, dy: jax.linear_transpose(lambda w: fn(x, w), w)(dy)[0]), x, dy),
  }


def main():
  ap = layer_parser(__doc__.splitlines()[0])
  ap.add_argument("--forms", default=",".join(FORMS))
  ap.add_argument("--tflops", type=float, default=790.0,
                  help="the card's bf16 matrix rate (an H100's measured ~790)")
  ap.add_argument("--tbps", type=float, default=3.35, help="the card's memory rate")
  args = ap.parse_args()
  forms = [f for f in args.forms.split(",") if f]
  if not forms or set(forms) - set(FORMS):
    raise SystemExit(f"--forms: comma-separated, from {','.join(FORMS)}; got {args.forms!r}")
  check_layer_args(args)
  B, S, p, n = args.batch, args.size, args.features, args.kernel
  m, k = n // 2, n // 2 + 1
  c_in, c_out = (-(-c // args.align) * args.align for c in (p + 1, 2 * p))
  kx, kv, kh = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (B, S, S, c_in), jnp.bfloat16)
  convs = {  # name: (kernel, padding), as the model places them
      "vertical": (jax.random.normal(kv, (k, n, c_in, c_out), jnp.bfloat16) * 0.05,
                   ((k - 1, 0), (m, m))),
      "horizontal": (jax.random.normal(kh, (1, k, c_in, c_out), jnp.bfloat16) * 0.05,
                     ((0, 0), (m, 0))),
  }
  print(f"batch {B}, {S}x{S}, features {p} (widths {c_in} -> {c_out}), kernel {n}, "
        f"{jax.devices()[0].device_kind}")
  for name, (w, padding) in convs.items():
    flops = 2 * B * S * S * w.shape[0] * w.shape[1] * c_in * c_out
    bytes_ = 2 * (x.size + B * S * S * c_out + w.size)
    floor_ms = max(flops / args.tflops / 1e9, bytes_ / args.tbps / 1e9)
    reference = {pass_name: fn().astype(jnp.float32)
                 for pass_name, fn in passes("conv", x, w, padding).items()}
    for form in forms:
      if form in ("conv1d", "outshift") and w.shape[0] != 1:
        continue
      for pass_name, fn in passes(form, x, w, padding).items():
        out = fn()
        diff = float(jnp.max(jnp.abs(out.astype(jnp.float32) - reference[pass_name])))
        scale = float(jnp.max(jnp.abs(reference[pass_name])))
        ms = timed(fn, args.steps) * 1e3
        row = {"conv": name, "form": form, "pass": pass_name, "ms": ms,
               "tflops": flops / ms / 1e9, "floor_ms": floor_ms,
               "of_floor": floor_ms / ms, "max_diff": diff / scale}
        print(f"  {name:10} {form:8} {pass_name:11} {ms:7.3f} ms  "
              f"{row['tflops']:5.0f} TFLOP/s  {row['of_floor']:5.1%} of the floor "
              f"({floor_ms:.3f} ms)  rel diff {row['max_diff']:.1e}")
        if args.out:
          write_summary(row | {"batch": B, "size": S, "features": p, "kernel": n,
                               "align": args.align}, args.out)


if __name__ == "__main__":
  main()
