"""Train, evaluate or sample a Gated PixelCNN (or an auto-encoder, or an
embedding net), and the paper's figures.

  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn
  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn --mode=eval
  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn --mode=sample

Running the same train command again resumes from the latest checkpoint.
--mode=reconstruct draws Fig. 6 from an auto-encoder's workdir; --mode=embed,
portraits and interpolate are section 3.3 (configs/olivetti_*.py).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from pixelcnn_jax import compress_files, distributed, evaluate, grids, logs, portraits
from pixelcnn_jax import preemption, reconstruction, train, xla_defaults
from pixelcnn_jax.errors import UserError

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cifar10.py "
                                "or configs/cifar10.py:smoke.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics, samples and eval results.")
MODES = {"train": train.train_and_evaluate, "eval": evaluate.run, "sample": grids.run,
         "reconstruct": reconstruction.run, "embed": portraits.run_embed,
         "portraits": portraits.run_portraits, "interpolate": portraits.run_interpolate,
         "compress": compress_files.run_compress,
         "decompress": compress_files.run_decompress}
flags.DEFINE_enum("mode", "train", list(MODES),
                  "train, eval, sample; reconstruct (an auto-encoder's Fig. 6 grid); "
                  "embed, portraits, interpolate (section 3.3); compress, decompress.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  logs.setup_cli()
  try:
    if len(argv) > 1:
      raise UserError(f"unexpected arguments: {' '.join(argv[1:])} "
                      "(everything is a --flag or a --config.key=value)")
    if not FLAGS.workdir.strip():  # Else the current folder becomes the workdir.
      raise UserError("--workdir is empty (an unset shell variable?); name the run's "
                      "folder")
    config = _load_config()
    xla_defaults.apply()
    distributed.initialize()
    MODES[FLAGS.mode](config, FLAGS.workdir)
  except UserError as e:
    _exit(f"error: {e}", 2)
  except OSError as e:  # A full disk or a vanished mount, mid-run.
    where = f" ({e.filename})" if e.filename else ""
    _exit(f"error: {e.strerror or e}{where}", 2)
  except preemption.Preempted as e:
    _exit(f"preempted: {e}", preemption.EXIT_CODE)


def _load_config():
  """FLAGS.config, with a config file that cannot load as one UserError line."""
  try:
    config = FLAGS.config
    config.keys()  # A file that failed to load raises on first use.
    return config
  except Exception as e:  # config_flags wraps every failure of the file.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    raise UserError(f"cannot load --config: {lines[-1] if lines else type(e).__name__}"
                    ) from e


def _exit(message: str, code: int) -> None:
  """Prints one line and exits at once: a normal interpreter exit would let
  orbax's leftover asynchronous work print tracebacks after it. Every
  checkpoint save has finished by now (the managers were closed on the way
  out)."""
  sys.stdout.flush()
  print(message, file=sys.stderr, flush=True)
  os._exit(code)


def parse_flags(argv):
  """absl's parser, but a bad flag or config override is one line and exit 2."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    # An unknown --config key arrives as a KeyError, sometimes wrapped in an
    # AttributeError; str() of either is a quoted repr.
    while e.args and isinstance(e.args[0], Exception):
      e = e.args[0]
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    # A config file that raises comes back with its traceback inside the
    # message: keep the flag and the exception's own line.
    lines = [l.strip() for l in str(text).splitlines() if l.strip()] or [type(e).__name__]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
