"""Graceful stop on SIGTERM: save the step reached, then exit for a requeue."""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


# EX_TEMPFAIL: launch/slurm.sbatch requeues the job when srun exits with it.
EXIT_CODE = 75


class Preempted(Exception):
  """SIGTERM arrived; the state of the step reached is saved. Rerun to resume."""


class StopOnSigterm:
  """SLURM's --signal, TPU maintenance and `kill` send SIGTERM: the loop
  finishes its step, saves it and stops. `requested` is this process's view."""

  def __init__(self):
    self._flag = threading.Event()

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  @property
  def requested(self) -> bool:
    return self._flag.is_set()


def agree(flags: tuple[bool, ...], step: int, every: int) -> tuple[bool, ...]:
  """Each flag OR-ed over all processes, so that they stop at the same step.

  With several processes this costs an all-gather, so it is taken once per
  `every` steps (returning all-False in between); one process checks every step.
  """
  if jax.process_count() == 1:
    return flags
  if step % every:
    return (False,) * len(flags)
  gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))
  return tuple(bool(v) for v in np.asarray(gathered).reshape(-1, len(flags)).max(0))
