"""One error type for everything the user can fix; the CLI turns it into exit code 2."""


class BenchError(Exception):
    """A user-facing problem (bad input, unknown plugin, missing weights...).

    The message is a single line that says what is wrong and how to fix it.
    """

    exit_code = 2


class BudgetExceeded(BenchError):
    """A defense produced images whose measured L-inf exceeds its declared budget."""


class StageFailed(BenchError):
    """A stage's plugin raised or broke its contract: one line naming the stage, the plugin and
    the exception; the full traceback is in `log_path`."""

    def __init__(self, message: str, kind: str = "", plugin: str = "", log_path: str | None = None):
        super().__init__(message)
        self.kind, self.plugin, self.log_path = kind, plugin, log_path
