"""Errors a user can act on: each names the file, the column and the problem."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One finding of a data check, addressed to the person who owns the data."""

    file: str
    column: str | None
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.problem}" + (f" ({self.hint})" if self.hint else "")


class PipelineError(Exception):
    """Base class of the errors this package raises on purpose."""


class ConfigError(PipelineError):
    """A parameter in an env file or on the command line is wrong."""


class DataError(PipelineError):
    """Input data cannot be used; carries every problem found, the first one in the message."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        lines = [str(p) for p in self.problems]
        head = lines[0]
        more = "" if len(lines) == 1 else "\n" + "\n".join(f"  also: {x}" for x in lines[1:])
        super().__init__(f"{head}{more}")
