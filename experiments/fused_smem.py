"""Shared memory that each fused sampling kernel asks for, without a GPU.

  python experiments/fused_smem.py [--shapes=15x132k3,20x384k5] [--blocks=64,32,16,8]
      [--stages=auto,1] [--dtypes=bfloat16,float32] [--arch=90] [--limit=232448]
      [--out=FILE.jsonl]

For each model shape and dtype (float32 at precision "highest", as the
exact sampler runs it), block of images per kernel instance and number of
Triton pipelining stages (auto: the library's, fused_pass.settings; its
warps in every case), set through fused_pass.OVERRIDE, lowers the cached
sampler for a batch of one block for CUDA, as the tests do (jax's export),
and compiles each Triton kernel in it by the `triton` package for compute
capability --arch; prints the shared memory of each kernel (a colour pass,
or the earlier groups' kernel before it) and whether the largest fits
--limit (232,448 bytes: what an H100 or H200 block may opt into, as XLA's
error gives it). `pip install triton` first; it needs no GPU.

The `triton` package is not the Triton inside XLA: its counts are estimates,
to be checked against XLA's on a GPU (experiments/RESULTS.md gives both).
"""

import argparse
import datetime
import itertools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
# jax's MLIR bindings, to read the Triton IR out of the exported module's
# custom calls; jax has no public API for a custom call's attributes.
from jax._src.interpreters import mlir
from jax._src.lib.mlir import ir

import pixelcnn_jax as pj
from pixelcnn_jax import fused_pass

import bench_sample
import bench_train

TRITON_CALL = "__gpu$xla.gpu.triton"


def triton_kernels(model, block, stages=None):
  """[(Triton IR bytes, warps, stages)] of the cached sampler's fused kernels
  for one block of `block` images at `stages` (None: the library's), lowered
  for CUDA."""
  default_stages, _, warps = fused_pass.settings(model)
  fused_pass.OVERRIDE = (stages or default_stages, block, warps)
  try:
    return _lowered_kernels(model, block)
  finally:
    fused_pass.OVERRIDE = None


def _lowered_kernels(model, block):
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                             jnp.zeros((1, *model.image_size, model.channels), jnp.uint8))
  body = lambda v, key, canvas, n, t: pj.sampling._cached_body(
      model, v, key, canvas, None, n, t, False, "pallas", None)
  exported = jax.export.export(
      jax.jit(body), platforms=["cuda"],
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL)])(
          variables, jax.ShapeDtypeStruct((2,), jnp.uint32),
          jax.ShapeDtypeStruct((block, *model.image_size, model.channels), jnp.uint8),
          jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32))
  kernels = []
  with mlir.make_ir_context():
    module = ir.Module.parse(exported.mlir_module())

    def walk(op):
      for region in op.regions:
        for b in region.blocks:
          for child in b.operations:
            child = child.operation
            if (child.name == "stablehlo.custom_call"
                and ir.StringAttr(child.attributes["call_target_name"]).value == TRITON_CALL):
              config = child.attributes["mhlo.backend_config"]
              kernels.append((ir.StringAttr(config["ir"]).value_bytes,
                              ir.IntegerAttr(config["num_warps"]).value,
                              ir.IntegerAttr(config["num_stages"]).value))
            walk(child)

    walk(module.operation)
  return kernels


def shared_bytes(ir_bytes, warps, stages, arch):
  """The shared memory that the `triton` package's compile of one kernel asks for."""
  import triton
  from jaxlib.triton import dialect
  from triton.backends.compiler import GPUTarget
  with mlir.make_ir_context() as context:
    dialect.register_dialect(context)
    text = str(ir.Module.parse(ir_bytes))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "kernel.ttir")
    with open(path, "w") as f:
      f.write(text)
    compiled = triton.compile(path, target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps, "num_stages": stages})
  return compiled.metadata.shared


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--shapes", default="15x132k3,20x384k5",
                 help="comma-separated LAYERSxFEATURESkKERNEL")
  p.add_argument("--blocks", default="64,32,16,8", help="images per kernel instance")
  p.add_argument("--stages", default="auto",
                 help="Triton pipelining stages, or auto (the library's), comma-separated")
  p.add_argument("--dtypes", default="bfloat16", help="bfloat16 or float32, comma-separated")
  p.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90")
  p.add_argument("--limit", type=int, default=232448, help="shared memory per block, bytes")
  p.add_argument("--out", default="", help="a file that each run adds its JSON lines to")
  args = p.parse_args()
  shapes = [bench_train.parse_shape(s, "--shapes") for s in bench_sample._listed(
      args, "shapes", r"\d+x\d+k\d+", "LAYERSxFEATURESkKERNEL, e.g. 15x132k3")]
  blocks = [int(b) for b in bench_sample._listed(args, "blocks", r"[1-9]\d*",
                                                  "integers >= 1")]
  stages = [None if v == "auto" else int(v) for v in bench_sample._listed(
      args, "stages", r"auto|[1-9]\d*", "integers >= 1 or auto")]
  dtypes = bench_sample._listed(args, "dtypes", r"bfloat16|float32", "bfloat16 or float32")
  try:
    import triton
  except ImportError:
    raise SystemExit("fused_smem.py needs the triton package: pip install triton")
  os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # XLA's Triton fuses.
  rows = []
  for (layers, features, kernel_size), dtype in itertools.product(shapes, dtypes):
    model = pj.GatedPixelCNN(num_layers=layers, features=features, kernel_size=kernel_size,
                             channels=3, image_size=(32, 32), dtype=jnp.dtype(dtype),
                             precision="highest" if dtype == "float32" else None,
                             channel_align=32)
    for block, stage in itertools.product(blocks, stages):
      kernels = triton_kernels(model, block, stage)
      shared = [shared_bytes(*k, args.arch) for k in kernels]
      r = {"shape": f"{layers}x{features}k{kernel_size}", "dtype": dtype, "block": block,
           "warps": kernels[0][1], "stages": kernels[0][2], "shared_bytes": shared,
           "fits": max(shared) <= args.limit, "limit": args.limit, "arch": args.arch,
           "triton": triton.__version__, "jax": jax.__version__,
           "date": datetime.date.today().isoformat()}
      print(json.dumps(r), flush=True)
      rows.append(r)
  if args.out:
    with open(args.out, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
  main()
