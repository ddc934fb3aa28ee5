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
  """SLURM's --signal, TPU maintenance and `kill` send SIGTERM: finish the
  step, save, and stop. Processes agree on the step through an all-gather,
  once per `every` steps, so that all of them save the same one."""

  def __init__(self, every: int):
    self.every, self._flag = every, threading.Event()

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  def requested(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self._flag.is_set()
    if step % self.every:
      return False
    flags = multihost_utils.process_allgather(np.int32(self._flag.is_set()))
    return bool(np.max(flags))
