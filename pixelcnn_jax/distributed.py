"""Multi-process start-up through jax.distributed.

On a TPU pod slice and under SLURM with several tasks, JAX finds the
coordinator itself. Elsewhere (e.g. several processes on one host), pass
--coordinator_address, --num_processes and --process_id.
"""

import os

import jax
import orbax.checkpoint as ocp
from absl import flags
from jax.experimental import multihost_utils

_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for explicit start-up.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Total processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process, 0-based.")


def _cluster_detected() -> bool:
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return slurm_tasks > 1 or "," in tpu_hosts


def initialize() -> None:
  """Joins the other processes, if any, before any JAX computation."""
  if _COORDINATOR.value or (_NUM_PROCESSES.value or 1) > 1:
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
      # CPU processes need a collectives library for cross-process all-reduce;
      # the backend may not be queried before initialize(), hence the env check.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif _cluster_detected():
    jax.distributed.initialize()
  else:
    return
  _open_collectives()


def _open_collectives(timeout_s: int = 600) -> None:
  """Opens the cross-process collectives while every process is present.

  The first collective sets up the communicator (gloo on CPU, NCCL on GPU),
  and gloo gives every process only 30 s to arrive; a process slowed at
  start-up (a loaded CI machine, a slow import) misses that. The coordinator's
  barrier waits minutes, so line up there first, then open the communicator;
  later collectives over the same devices reuse it.
  """
  ocp.multihost.get_barrier_sync_fn()(key="pixelcnn_jax_start",
                                      timeout_ms=timeout_s * 1000)
  multihost_utils.sync_global_devices("pixelcnn_jax_start")
