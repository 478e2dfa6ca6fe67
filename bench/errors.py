"""One error type for everything the user can fix; the CLI turns it into exit code 2."""


class BenchError(Exception):
    """A user-facing problem (bad input, unknown plugin, missing weights...).

    The message is a single line that says what is wrong and how to fix it.
    """

    exit_code = 2


class BudgetExceeded(BenchError):
    """A defense produced images whose measured L-inf exceeds its declared budget."""
