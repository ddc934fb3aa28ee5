"""Device mesh and shardings: one code path for 1 device, N devices, many hosts."""

import math
from typing import Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pixelcnn_jax.errors import UserError

DATA = "data"


def make_mesh(axes: Mapping[str, int]) -> Mesh:
  """A mesh over every device of every process; one axis size may be -1."""
  names = tuple(axes)
  sizes = [int(s) for s in axes.values()]
  if DATA not in names:
    raise UserError(f"config.mesh needs a '{DATA}' axis, got {dict(axes)}")
  n = jax.device_count()
  if sizes.count(-1) > 1:
    raise UserError(f"config.mesh may have at most one -1 axis, got {dict(axes)}")
  if -1 in sizes:
    known = math.prod(s for s in sizes if s != -1)
    sizes[sizes.index(-1)] = n // known if known and n % known == 0 else 0
  if math.prod(sizes) != n or 0 in sizes:
    raise UserError(f"config.mesh {dict(axes)} does not fit {n} devices")
  # Auto axes: jit propagates shardings from in/out_shardings (GSPMD), so the
  # model code stays free of sharding annotations.
  return jax.make_mesh(sizes, names, axis_types=(AxisType.Auto,) * len(names))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis; everything else replicated."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch(global_batch: int, mesh: Mesh, what: str) -> int:
  """The per-process share of `global_batch`; it must split evenly."""
  data_size = mesh.shape[DATA]
  if global_batch % data_size or global_batch % jax.process_count():
    raise UserError(f"{what}={global_batch} must be divisible by the {data_size} "
                    f"devices of the data axis and by {jax.process_count()} processes")
  return global_batch // jax.process_count()


def to_global(local_tree, sharding: NamedSharding):
  """Assembles per-process numpy shards into global jax.Arrays."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), local_tree)


def params_fingerprint(params) -> float:
  """Sum of |params| from this process's own copy: equal on every process."""
  return float(sum(np.abs(np.asarray(x.addressable_data(0), np.float64)).sum()
                   for x in jax.tree_util.tree_leaves(params)))
