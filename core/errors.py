"""Errors meant for the user: the CLI prints them without a traceback and exits with a non-zero code."""


class UserError(Exception):
    """Bad input or configuration. The message names the file/row/field and says how to fix it. `keep`: files
    (relative to a staged output folder) that the message points to, kept when the rest of the output is not
    (prepare's rejected.csv)."""

    exit_code = 2

    def __init__(self, message: str = "", keep: tuple[str, ...] = ()):
        super().__init__(message)
        self.keep = tuple(keep)


class ConfigError(UserError):
    """One or more configuration problems, all listed (never only the first)."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")
