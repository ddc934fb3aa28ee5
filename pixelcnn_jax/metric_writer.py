"""Metrics to JSON lines always, and to TensorBoard through clu when TF is there."""

import importlib.util
import json
import os
import time

import jax
from etils import epath


class MetricWriter:
  """Writes on process 0 only; other processes get a writer that does nothing."""

  def __init__(self, workdir: str):
    self._enabled = jax.process_index() == 0
    self._jsonl = None
    self._tb = None
    if not self._enabled:
      return
    self._jsonl = (epath.Path(workdir) / "metrics.jsonl").open("a")
    if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("clu"):
      from clu import metric_writers  # Imports TensorFlow: only when present.
      self._tb = metric_writers.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: dict) -> None:
    if not self._enabled:
      return
    scalars = {k: float(v) for k, v in metrics.items()}
    self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars})
                      + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      self._tb.write_scalars(int(step), scalars)

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()
