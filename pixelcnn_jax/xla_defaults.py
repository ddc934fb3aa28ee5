"""XLA flags that the entry points set unless XLA_FLAGS already names them.

XLA reads XLA_FLAGS once, when JAX starts its first backend, so `apply`
works only before any computation or device query; `pixelcnn_jax.main` and
the training benchmarks call it first thing. Importing the library sets
nothing: a Python user who wants the same flags calls `apply` before
touching JAX, or sets XLA_FLAGS.
"""

import os
from typing import MutableMapping

# cuBLAS for every dot instead of XLA's Triton GEMM fusions: on an H200 the
# training step is 1.6% faster at 15 x 132 and 3.9% at 20 x 384 (batch 256),
# 2.5-3.5% at batch 128 and in the CIFAR-10 recipe's step with AdamW and
# Muon, and the sampler's time at 15 x 132 is unchanged (experiments/RESULTS.md,
# "XLA's Triton GEMMs off"). The flag is in the debug options that every XLA
# backend parses; on CPU it changes nothing (the test suite runs with it).
DEFAULTS = ("--xla_gpu_enable_triton_gemm=false",)


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def apply(environ: MutableMapping[str, str] = os.environ) -> str:
  """Appends to XLA_FLAGS each default whose flag it does not already set,
  so a user's own setting of one wins; returns the new XLA_FLAGS."""
  current = environ.get("XLA_FLAGS", "").split()
  named = {_flag_name(f) for f in current}
  flags = current + [f for f in DEFAULTS if _flag_name(f) not in named]
  environ["XLA_FLAGS"] = " ".join(flags)
  return environ["XLA_FLAGS"]
