"""The one exception type that the CLI turns into a one-line error and exit 2."""


class UserError(Exception):
  """Bad input from the user: a config, a file, a flag or a workdir."""
