"""The GPUs' SM clock and power draw while a benchmark times a step.

An H100 held at its 700 W limit lowers its SM clock (NVML's "SW power cap"
clock event), so a step's time depends on the energy it takes as well as on
its kernels; a row that records the clock says which of the two changed.
Samples `nvidia-smi` every 100 ms; off a machine with NVIDIA GPUs it records
nothing.
"""

import os
import shutil
import subprocess
from typing import Optional, Sequence

QUERY = "clocks.sm,power.draw,clocks_event_reasons.active"
SW_POWER_CAP = 0x4  # NVML's clocks event reason bit.


def summary(lines: list[str]) -> dict:
  """{sm_mhz_mean, sm_mhz_min, power_w_mean, power_capped_share} over the
  samples (lines of `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`,
  one line per GPU and sample); {} without any."""
  samples = []
  for line in lines:
    fields = [f.strip() for f in line.split(",")]
    try:
      samples.append((float(fields[0]), float(fields[1]), int(fields[2], 16)))
    except (IndexError, ValueError):
      continue  # A GPU that reports "[N/A]" for a field.
  if not samples:
    return {}
  clocks, watts, reasons = zip(*samples)
  return {"sm_mhz_mean": sum(clocks) / len(clocks), "sm_mhz_min": min(clocks),
          "power_w_mean": sum(watts) / len(watts),
          "power_capped_share": sum(bool(r & SW_POWER_CAP) for r in reasons) / len(reasons)}


def smi_indices(cuda_ordinals: Sequence[int], environ=os.environ) -> list[int]:
  """nvidia-smi's indices of the GPUs that CUDA numbers cuda_ordinals (a jax
  device's local_hardware_id), through CUDA_VISIBLE_DEVICES where it lists
  indices. Both count in PCI bus order, as they do on machines of one GPU
  model (CUDA's default order puts the fastest first)."""
  visible = environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
  if all(v.strip().isdigit() for v in visible):
    return [int(visible[i]) for i in cuda_ordinals]
  return list(cuda_ordinals)


class Sampler:
  """`with Sampler(gpus) as s: ...`, then s.result: summary() of the samples
  of nvidia-smi's GPUs `gpus` (all where None, none where empty) taken
  inside the block."""

  def __init__(self, gpus: Optional[Sequence[int]] = None, period_ms: int = 100):
    self.gpus = gpus
    self.period_ms = period_ms
    self.result = {}
    self._proc = None

  def __enter__(self):
    smi = shutil.which("nvidia-smi")
    if smi and (self.gpus is None or self.gpus):
      only = [] if self.gpus is None else [f"--id={','.join(map(str, self.gpus))}"]
      self._proc = subprocess.Popen(
          [smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
           f"--loop-ms={self.period_ms}", *only], stdout=subprocess.PIPE,
          stderr=subprocess.DEVNULL, text=True)
    return self

  def __exit__(self, *exc):
    if self._proc is not None:
      self._proc.terminate()
      out, _ = self._proc.communicate()
      self.result = summary(out.splitlines())
    return False
