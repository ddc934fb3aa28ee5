"""Device mesh and shardings: one code path for 1 device, N devices, many hosts.

Two axes. `data` splits the batch and replicates the state. `fsdp` also splits
the batch, and in addition splits every parameter and optimizer array along
one of its dimensions (FSDP / ZeRO-3): XLA gathers a layer's weights where a
step needs them and reduce-scatters its gradients, so a model that does not
fit one device's memory still trains. `{"data": -1, "fsdp": 1}` is plain data
parallelism.
"""

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pixelcnn_jax.errors import UserError

DATA = "data"
FSDP = "fsdp"
AXES = (DATA, FSDP)


def make_mesh(axes: Mapping[str, int]) -> Mesh:
  """A mesh over every device of every process; one axis size may be -1."""
  names = tuple(axes)
  sizes = [int(s) for s in axes.values()]
  if DATA not in names or not set(names) <= set(AXES):
    raise UserError(f"config.mesh needs a '{DATA}' axis and may have an '{FSDP}' "
                    f"axis, got {dict(axes)}")
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


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in AXES if a in mesh.shape)


def batch_devices(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every device (data and fsdp axes)."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_sharding(mesh: Mesh, tree):
  """Shardings for a tree of arrays (or shapes): each split along its largest
  dimension that the fsdp axis divides; replicated without an fsdp axis, and
  where no dimension divides (biases of odd width, scalars)."""
  n = mesh.shape.get(FSDP, 1)

  def one(x):
    dims = [d for d in np.argsort(x.shape, kind="stable")[::-1]
            if x.shape[d] >= n and x.shape[d] % n == 0]
    if n == 1 or not dims:
      return replicated(mesh)
    spec = [None] * len(x.shape)
    spec[dims[0]] = FSDP
    return NamedSharding(mesh, P(*spec))

  return jax.tree_util.tree_map(one, tree)


def check_batch(global_batch: int, mesh: Mesh, what: str) -> int:
  """The per-process share of `global_batch`; it must split evenly."""
  devices = batch_devices(mesh)
  if global_batch % devices or global_batch % jax.process_count():
    raise UserError(f"{what}={global_batch} must be divisible by the {devices} "
                    f"devices of the batch axes {batch_axes(mesh)} and by "
                    f"{jax.process_count()} processes")
  return global_batch // jax.process_count()


def to_global(local_tree, sharding: NamedSharding):
  """Assembles per-process numpy shards into global jax.Arrays."""
  return jax.tree_util.tree_map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), local_tree)


def pad_rows(a, rows: int):
  """a (numpy, or None) with copies of its first row appended up to `rows`:
  a batch filled to a size the devices divide, the extra rows' results
  discarded after."""
  return None if a is None else np.concatenate([a, np.repeat(a[:1], rows - len(a), axis=0)])


def params_fingerprint(params) -> float:
  """Sum of |params|. Replicated arrays are summed from this process's own
  copy, so equal prints show that the processes hold the same state."""
  def one(x):
    if x.is_fully_replicated:
      return np.abs(np.asarray(x.addressable_data(0), np.float64)).sum()
    return float(jax.jit(lambda a: jnp.sum(jnp.abs(a)))(x))
  return float(sum(one(x) for x in jax.tree_util.tree_leaves(params)))
