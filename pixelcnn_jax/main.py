"""Train, evaluate or sample a Gated PixelCNN.

  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn
  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn --mode=eval
  python -m pixelcnn_jax.main --config=configs/default.py --workdir=/tmp/pcnn --mode=sample

Running the same train command again resumes from the latest checkpoint.
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from pixelcnn_jax import distributed, evaluate, generate, preemption, train
from pixelcnn_jax.errors import UserError

config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/cifar10.py "
                                "or configs/cifar10.py:smoke.", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics, samples and eval results.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Our progress lines go to stdout; library chatter through absl (orbax logs
  # every save, and warns on every read-only open) only from ERROR up.
  absl_logging.set_verbosity(absl_logging.ERROR)
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  logging.getLogger("pixelcnn_jax").addHandler(handler)
  logging.getLogger("pixelcnn_jax").setLevel(logging.INFO)
  logging.getLogger("pixelcnn_jax").propagate = False
  try:
    distributed.initialize()
    run = {"train": train.train_and_evaluate, "eval": evaluate.run,
           "sample": generate.run}[FLAGS.mode]
    run(FLAGS.config, FLAGS.workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except preemption.Preempted as e:
    print(f"preempted: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_CODE)


def parse_flags(argv):
  """absl's parser, but a bad flag or config override is one line and exit 2."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    # A config file that raises comes back with its traceback inside the
    # message: keep the flag and the exception's own line.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
