"""Training progress: per-window means and speed, and a steady ETA.

Each logging window reports the mean of its steps' metrics and its own
training speed (side work such as evals and sample grids is excluded, so that
img/s is about training). The ETA instead uses the wall-clock rate since the
end of the first window, side work included: the first window holds
compilation, and a single window's rate swings with whatever it contained.
"""

import time
from typing import Callable

import jax.numpy as jnp


class Progress:

  def __init__(self, first_step: int, clock: Callable[[], float] = time.perf_counter):
    self._clock = clock
    self._window = []
    self._window_start = clock()
    self._side_s = 0.0
    self._steady_from = None  # (step, time) at the end of the first window.
    self.first_step = first_step
    # Steps and seconds of training in closed windows, side work excluded.
    self.trained = (0, 0.0)

  def add(self, metrics: dict) -> None:
    self._window.append(metrics)

  def exclude(self, seconds: float) -> None:
    """Side work inside the current window, kept out of its speed."""
    self._side_s += seconds

  def close_window(self, step: int) -> dict:
    """Means of the window's metrics (a host sync), its steps/s, and resets."""
    now = self._clock()
    means = {k: float(jnp.mean(jnp.stack([m[k] for m in self._window])))
             for k in self._window[0]}
    seconds = max(now - self._window_start - self._side_s, 1e-9)
    means["steps_per_s"] = len(self._window) / seconds
    self.trained = (self.trained[0] + len(self._window), self.trained[1] + seconds)
    if self._steady_from is None:
      self._steady_from = (step, now)
    self._window, self._window_start, self._side_s = [], now, 0.0
    return means

  def eta_s(self, step: int, last_step: int, window_steps_per_s: float) -> float:
    """Seconds to `last_step` at the rate since the first window ended."""
    start_step, start_time = self._steady_from
    elapsed = self._clock() - start_time
    rate = (step - start_step) / elapsed if step > start_step and elapsed > 0 \
        else window_steps_per_s
    return (last_step - step) / max(rate, 1e-9)


def format_duration(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
