"""`pixelcnn_jax.main`, except that process 1 reaches its first collective late.

Run by test_scale.py as two processes. The delay outlasts gloo's 30 s window
for opening the communicator, the CI failure this guards against: a process
slowed by a loaded machine must be waited for, not fail the run.
"""

import time

import jax
from absl import app

from pixelcnn_jax import checkpoint, main

LATE_S = 35
_manager = checkpoint.manager


def late_manager(*args, **kwargs):
  if jax.process_index() == 1:
    time.sleep(LATE_S)
  return _manager(*args, **kwargs)


if __name__ == "__main__":
  checkpoint.manager = late_manager
  app.run(main.main, flags_parser=main.parse_flags)
