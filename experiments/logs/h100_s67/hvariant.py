"""Runs an experiments/ script with the model's (1 x k) convolutions in another
formulation of bench_layer_convs.py, from the repository's root:

  HCONV=conv|im2col|outshift|conv1d python experiments/logs/h100_s67/hvariant.py SCRIPT ARGS...
"""
import atexit
import os
import runpy
import sys

sys.path.insert(0, "experiments")
import jax
from pixelcnn_jax import layers
import bench_layer_convs as blc

form = os.environ.get("HCONV", "conv")
CALLS = []  # printed at exit, so that a run shows the swap took place
atexit.register(lambda: print("patched calls:", len(CALLS)))
real = jax.lax.conv_general_dilated

def conv_general_dilated(x, w, window_strides, padding, dimension_numbers=None, precision=None, **kw):
  if form != "conv" and w.shape[0] == 1 and tuple(padding[0]) == (0, 0):
    CALLS.append(form)
    return getattr(blc, form)(x, w, tuple(tuple(p) for p in padding))
  return real(x, w, window_strides, padding, dimension_numbers=dimension_numbers, precision=precision, **kw)

class Proxy:
  def __init__(self, real, **over): self._real, self._over = real, over
  def __getattr__(self, n): return self._over[n] if n in self._over else getattr(self._real, n)
layers.jax = Proxy(jax, lax=Proxy(jax.lax, conv_general_dilated=conv_general_dilated))
print(f"HCONV={form}", flush=True)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
