"""What reaches the terminal: our own progress lines, and no library noise."""

import contextlib
import logging
import sys
import traceback

from absl import logging as absl_logging


def setup_cli() -> None:
  """Our progress lines to stdout; absl chatter (orbax logs every save, warns
  on every read-only open, and logs each failed background write with its
  traceback before the main thread sees the error) only if fatal. Failures
  reach the user as exceptions, reported in one line."""
  absl_logging.set_verbosity(absl_logging.FATAL)
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
  ours = logging.getLogger("pixelcnn_jax")
  ours.addHandler(handler)
  ours.setLevel(logging.INFO)
  ours.propagate = False


@contextlib.contextmanager
def quiet_absl():
  """Library messages through absl (orbax warns on read-only opens and saves
  without metrics, and logs failed background writes that reach us as
  exceptions anyway; TFDS warns on unprepared folders) are not news to a user."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def drop_async_leftovers() -> None:
  """After a failed checkpoint read or write, orbax and tensorstore leave
  callbacks and coroutines that fail again on a closed event loop, each
  printing a traceback that repeats the error that is reported in one line.
  Drop exactly those, whichever hook prints them (installed once)."""
  if getattr(sys.unraisablehook, "drops_async_leftovers", False):
    return
  previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

  def leftover(value, tb) -> bool:
    return ("Event loop is closed" in str(value)
            or "orbax" in "".join(traceback.format_tb(tb)))

  def unraisable_hook(unraisable):
    if not leftover(unraisable.exc_value, unraisable.exc_traceback):
      previous_unraisable(unraisable)

  def except_hook(kind, value, tb):
    if not (isinstance(value, RuntimeError) and leftover(value, tb)):
      previous_except(kind, value, tb)

  unraisable_hook.drops_async_leftovers = True
  sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook
