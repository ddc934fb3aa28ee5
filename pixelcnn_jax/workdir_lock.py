"""One training run per workdir: a second is refused before it touches it.

Two runs in one workdir save the same steps over each other, and each one's
cleanup deletes the other's checkpoints; a double submission or a requeue
while the old job still runs does exactly that. Process 0 of a run holds an
exclusive flock on `<workdir>/train.lock` for the whole run. The kernel drops
it when the process ends in any way, SIGKILL included (on NFS, a lost node's
lock lapses with its lease), so a rerun is not blocked by a run that is gone.
The file names its holder for the refusal. Eval, sample and `pj.load` take no
lock: they only read.

Not locked, with one warning: workdirs that are not local paths (gs://...)
and filesystems without flock.
"""

import contextlib
import datetime
import fcntl
import logging
import os
import socket

import jax
import numpy as np
from jax.experimental import multihost_utils

from pixelcnn_jax.errors import UserError

log = logging.getLogger(__name__)
LOCK_FILE = "train.lock"


@contextlib.contextmanager
def hold(workdir: str):
  """Holds the workdir's lock for the body; raises UserError, on every
  process, if another run holds it."""
  fd, holder = None, None
  if jax.process_index() == 0:
    fd, holder = _acquire(workdir)
  refused = holder is not None
  if jax.process_count() > 1:
    refused = bool(multihost_utils.broadcast_one_to_all(np.int32(refused)))
  if refused:
    raise UserError(f"workdir {workdir} is in use by another training run "
                    f"({holder or 'named in its train.lock'}); wait for it to end or "
                    "stop it, or use another --workdir")
  try:
    yield
  finally:
    if fd is not None:
      os.close(fd)


def _acquire(workdir: str):
  """(fd holding the lock, None), (None, the holder) or (None, None): unlockable.

  Never raises: process 0 failing here would leave the others waiting.
  """
  if "://" in workdir:
    return _unlocked(workdir, "not a local path")
  try:
    fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    return _unlocked(workdir, e.strerror or type(e).__name__)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 256, 0).decode(errors="replace").strip()
    os.close(fd)
    return None, holder or "its holder not yet named"
  except OSError as e:
    os.close(fd)
    return _unlocked(workdir, e.strerror or type(e).__name__)
  since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  try:  # The name only words a refusal; a full disk leaves the lock unnamed.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
  except OSError:
    pass
  return fd, None


def _unlocked(workdir: str, reason: str):
  log.warning("workdir %s cannot be locked (%s): a second training run there would "
              "not be refused", workdir, reason)
  return None, None
