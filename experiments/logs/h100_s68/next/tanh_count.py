"""How many tanh ops the gradient of a small bf16 model keeps after XLA's
optimisation (CSE included), on this machine's backend:

  GATE=cvjp PYTHONPATH=PACKAGE_WITH_gate_variants.patch python3 tanh_count.py

2026-12-05, CPU, jax 0.10.2: plain 3 lowered / 3 optimised, cvjp 6 / 3,
cvjpb 6 / 6, ckpt 6 / 3 (2 layers; the last vertical gate is unused).
"""
import re

import jax
import jax.numpy as jnp
import numpy as np

import pixelcnn_jax.model as M

m = M.GatedPixelCNN(num_layers=2, features=12, kernel_size=3, channels=3,
                    dtype=jnp.bfloat16, channel_align=32)
x = np.zeros((2, 8, 8, 3), np.uint8)
v = m.init(jax.random.PRNGKey(0), x)
f = jax.jit(jax.grad(lambda p: m.apply({"params": p}, x).mean()))
lowered = f.lower(v["params"])
print("tanh lowered", len(re.findall(r"stablehlo.tanh", lowered.as_text())),
      "optimised", len(re.findall(r" tanh\(", lowered.compile().as_text())))
