"""Errors meant for the user: the CLI prints them without a traceback and exits with a non-zero code."""


class UserError(Exception):
    """Bad input or configuration. The message names the file/row/field and says how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """One or more configuration problems, all listed (never only the first)."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")
