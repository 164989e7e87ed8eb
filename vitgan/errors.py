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


class PeerLost(UserError):
    """A collective failed because another rank died. The process group is left broken (it cannot
    be torn down), so the command that shows this line ends the process at once afterwards: gloo's
    threads would otherwise abort the interpreter's exit ("terminate called without an active
    exception", exit code 134) after the one line."""


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) in any command: raised where the process is, so every ``finally`` /
    ``except BaseException`` clean-up runs as for Ctrl-C (staging folders, temporary files); not an
    Exception, so no ``except Exception`` turns it into another error. Exit code 128 + N."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"terminated ({signal.Signals(signum).name}); nothing half-written was kept")
        self.exit_code = 128 + signum


def out_of_memory(err: BaseException) -> str | None:
    """"device" / "host" when ``err`` is an allocator's out-of-memory failure (CUDA's "out of
    memory", the CPU allocator's "can't allocate memory", Python's MemoryError), else None."""
    if isinstance(err, MemoryError):
        return "host"
    text = str(err).lower()
    if isinstance(err, RuntimeError) and "out of memory" in text:
        return "device"
    if isinstance(err, RuntimeError) and ("can't allocate memory" in text or "defaultcpuallocator" in text):
        return "host"
    return None


def one_line(text, limit: int | None = None) -> str:
    """Collapse a message (which may quote an exception) onto one line, cut at ``limit`` characters."""
    out = " ".join(str(text).split())
    return out if limit is None or len(out) <= limit else out[:limit] + "..."
