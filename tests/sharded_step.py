"""One train step sharded over every (fake CPU) device vs. the same step on one.

Run by test_scale.py in a fresh process, since the device count is fixed at
start-up: XLA_FLAGS=--xla_force_host_platform_device_count=N.
  python tests/sharded_step.py [FSDP [OPTIMIZER [CHANNEL_ALIGN [MUON_SPLIT [MICROBATCHES]]]]]
FSDP is the fsdp axis's size; MUON_SPLIT 1 sets train.muon_split; MICROBATCHES
sets train.microbatches (both steps take the same slices). Prints the
max abs difference of the params after the step, how many parameter and
optimizer arrays the sharded state splits over its devices, the most layers
of one Muon stack, and the most that one device multiplies at once in the
sharded step (the leading dimension of its batched products, Newton-Schulz's).
"""

import collections
import re
import sys

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from pixelcnn_jax import config_base
from pixelcnn_jax import mesh as mesh_lib
from pixelcnn_jax import train
from pixelcnn_jax import train_state as ts


def one_step(mesh, cfg, images, labels):
  model, tx, shardings, step = train.setup(cfg, mesh)
  state = train.fresh_state(cfg, model, tx, shardings)
  batch = mesh_lib.to_global({"x": images, "h": labels}, mesh_lib.batch_sharding(mesh))
  key = jax.random.PRNGKey(1)
  compiled = step.lower(state, batch["x"], batch["h"], key).compile()
  batched = [int(m.group(1)) for m in re.finditer(
      r"= f32\[(\d+),[^\]]*\]\S* dot\(.*lhs_batch_dims", compiled.as_text())]
  # Muon stacks its kernels by shape (shape_groups): its stacks' depths.
  depths = collections.Counter(
      p.shape for path, p in jax.tree_util.tree_flatten_with_path(state.params)[0]
      if ts.muon_label(path, p) == "muon")
  state, _ = compiled(state, batch["x"], batch["h"], key)
  split = sum(not x.is_fully_replicated for x in jax.tree_util.tree_leaves(state))
  return (jax.tree_util.tree_map(np.asarray, (state.params, state.ema_params)), split,
          max(depths.values(), default=0), max(batched, default=0))


def main():
  n = jax.device_count()
  cfg = config_base.base()
  cfg.model.update(num_layers=5, features=12, kernel_size=3, channels=3, skip=True,
                   conditioning="class", num_classes=10, spatial_features=4,
                   dropout=0.5, channel_align=int(sys.argv[3]) if len(sys.argv) > 3 else 0)
  cfg.data.image_size = (6, 6)
  cfg.train.update(warmup_steps=0, num_steps=10, ema_decay=0.9, weight_decay=0.1,
                   batch_size=n, optimizer=sys.argv[2] if len(sys.argv) > 2 else "adamw",
                   muon_split=len(sys.argv) > 4 and sys.argv[4] == "1",
                   microbatches=int(sys.argv[5]) if len(sys.argv) > 5 else 1)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2 * n, 6, 6, 3), np.uint8)
  labels = rng.integers(0, 10, (2 * n,), np.int32)
  fsdp = int(sys.argv[1]) if len(sys.argv) > 1 else 1
  sharded, split, layers, per_device = one_step(
      mesh_lib.make_mesh({"data": -1, "fsdp": fsdp}), cfg, images, labels)
  single = one_step(Mesh(np.array(jax.devices()[:1]), ("data",),
                         axis_types=(AxisType.Auto,)), cfg, images, labels)[0]
  diffs = [np.abs(a - b).max() for a, b in zip(jax.tree_util.tree_leaves(sharded),
                                               jax.tree_util.tree_leaves(single))]
  print(f"devices={n} fsdp={fsdp} split_arrays={split} max_abs_diff={max(diffs):.3e} "
        f"muon_layers={layers} batched_per_device={per_device}")


if __name__ == "__main__":
  main()
