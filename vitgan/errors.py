"""User-facing errors: one line, naming the problem and the fix, no traceback.

Anything the user can cause (a bad option, a missing file, a corrupt archive) raises
``UserError``. The command line prints ``vitgan: error: <message>`` and exits with
``exit_code`` (2 for bad options, 1 for bad data or files) without writing anything.
"""


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the single line shown to them."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class OptionError(UserError):
    """A bad command-line option or configuration value (exit code 2)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=2)
