"""Where --mode=eval and the figure modes write, tried before they work.

These modes only read a workdir, which may be a share of someone's
checkpoints that this user cannot write; `eval.output_dir` sends their
`eval/` and `samples/` there instead. A figure is the whole product of its
mode, so its folder is written to before any checkpoint is read or image
drawn: a folder that refuses costs one line, not the drawing.
"""

import os

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from pixelcnn_jax.errors import UserError

HINT = "set --config.eval.output_dir to a folder you may write"


def folder(config, workdir: str, name: str) -> str:
  """`<eval.output_dir or workdir>/<name>`, e.g. name="samples"."""
  return os.path.join(config.eval.output_dir or workdir, name)


def writable(config, workdir: str, *names: str) -> list[str]:
  """The folders of `names`, created by process 0, which writes to each; a
  UserError on every process where one cannot be written."""
  folders = [folder(config, workdir, name) for name in names]
  check(folders, HINT)
  return folders


def check(folders: list[str], hint: str) -> None:
  """Raises UserError on every process unless process 0 can write into each
  of `folders` (created if missing)."""
  problem = _first_problem(folders) if jax.process_index() == 0 else ""
  failed = bool(problem)
  if jax.process_count() > 1:
    failed = bool(multihost_utils.broadcast_one_to_all(np.int32(failed)))
  if failed:
    where = problem or "an output folder (process 0 says which)"
    raise UserError(f"cannot write into {where}; {hint}")


def _first_problem(folders: list[str]) -> str:
  """"folder: why" for the first folder that refuses a file, else ""."""
  for name in folders:
    why = probe(name)
    if why:
      return f"{name}: {why}"
  return ""


def unused(path: str, reusable=lambda existing: False) -> str:
  """`path`, or the first of `<stem>_2<ext>`, `<stem>_3<ext>`, ... that is
  free or `reusable`: a figure mode run again, at another temperature say,
  keeps the earlier figure."""
  stem, ext = os.path.splitext(path)
  candidate, n = path, 1
  while epath.Path(candidate).exists() and not reusable(epath.Path(candidate)):
    n += 1
    candidate = f"{stem}_{n}{ext}"
  return candidate


def probe(folder: str) -> str:
  """Why `folder` (created if missing) cannot take a file, or "" if it can.

  Never raises: process 0 failing here would leave the others waiting.
  """
  try:
    path = epath.Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    test_file = path / f".write_probe_{os.getpid()}"
    test_file.write_bytes(b"")
    test_file.unlink()
  except Exception as e:  # OSError locally; remote file systems raise their own.
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
  return ""
