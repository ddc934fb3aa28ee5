"""A wall-clock budget that a run ends inside, with its learning rate decayed.

With `train.time_budget_s > 0` a run trains at the schedule of
`train.num_steps` (the most it may take) until the probe step, the end of its
second logging window: the first window holds compilation, the second gives
the speed. At the probe it evaluates and draws a sample grid, timing both
(the first grid includes the sampler's compilation, so later grids are
over-counted, never under-). It then fixes the cosine horizon H: the largest
step such that the time so far, the steps still to train, and every eval and
grid still due, the final ones included, fit the budget. The run then ends at
H like any finished run (save, eval, sample). The probe's window runs slower
than the steady state (41 against 49 steps/s on MNIST on an H100, which left
2 of 14.5 minutes unused), so once a quarter of the budget has passed the
horizon is fitted once more, at the training speed measured since the probe;
the cosine is then still near its peak, so the learning rate barely moves. A
run resumed after the probe keeps the horizon in its checkpoint.
"""

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Costs:
  """Measured seconds: one training step, one eval, one sample grid."""
  step_s: float
  eval_s: float
  sample_s: float


REFIT_FRACTION = 0.25


def probe_step(log_every: int) -> int:
  return 2 * log_every


def refit_step(elapsed_s: float, step: int, budget_s: float, step_s: float,
               log_every: int) -> int:
  """The first logging step after REFIT_FRACTION of the budget, as the probe
  predicts it: a step number, so that every process refits at the same one."""
  steps = max(math.ceil((REFIT_FRACTION * budget_s - elapsed_s) / step_s), 1)
  return -(-(step + steps) // log_every) * log_every


def _due(first: int, last: int, every: int) -> int:
  """Multiples of `every` in (first, last], plus the final one at `last`."""
  return last // every - first // every + (0 if last % every == 0 else 1)


def predicted_end_s(elapsed_s: float, step: int, horizon: int, costs: Costs,
                    eval_every: int, sample_every: int) -> float:
  """Seconds from the run's start to the end of step `horizon`'s eval and grid."""
  return (elapsed_s + (horizon - step) * costs.step_s
          + _due(step, horizon, eval_every) * costs.eval_s
          + _due(step, horizon, sample_every) * costs.sample_s)


def fit_horizon(elapsed_s: float, step: int, budget_s: float, costs: Costs,
                eval_every: int, sample_every: int, max_steps: int) -> int:
  """The largest H in [step, max_steps] whose predicted end fits `budget_s`
  (`step` itself if nothing more fits). The predicted end grows with H, so a
  bisection finds it."""
  fits = lambda h: predicted_end_s(elapsed_s, step, h, costs, eval_every,
                                   sample_every) <= budget_s
  lo, hi = step, max_steps
  if fits(hi):
    return hi
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo
