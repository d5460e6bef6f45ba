"""The typed errors of tapeout. Every failure a user can cause is one of these.

Messages point into the printed IR (``%value`` names, node locations) so that a hardware
engineer can find the spot in ``tapeout inspect`` output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


class TapeoutError(Exception):
    """Base class of every error tapeout raises on purpose."""


class FrontendError(TapeoutError):
    """A model file or module could not be read into the IR (corrupt file, missing data)."""


class VerifyError(TapeoutError):
    """The graph breaks an IR invariant (types, use-lists, topological order, cycles)."""


class ParseError(TapeoutError):
    """The IR text could not be parsed; the message gives line and column."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        where = (
            f"line {line}" + (f", column {column}" if column is not None else "") if line else ""
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.line = line
        self.column = column


class ShapeError(VerifyError):
    """Operand shapes or dtypes that an op cannot take."""


class InputError(TapeoutError):
    """Inputs given to ``run``/``interpret`` do not match the graph's inputs."""


class UsageError(TapeoutError):
    """An option, name or file given on the command line or to ``compile`` makes no sense
    (an unknown option key, a pass name that is not in the pipeline, unused calibration
    arrays); the message says what was meant where it can guess."""


class OutputError(UsageError):
    """The output folder cannot be written or must not be replaced (a folder that is not a
    tapeout artifact, a file, the current folder, the folder of the input model)."""


class TargetError(TapeoutError):
    """A target file is missing, unreadable, or has unknown or invalid keys."""


class BudgetError(TapeoutError):
    """No configuration a search found meets the budget. The message names each limit that
    is short and by how much at the best point; ``result`` is the search's full result."""

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


class BackendError(TapeoutError):
    """A backend failed while compiling or running an artifact."""


class IntegrityError(BackendError):
    """An artifact's files do not match the hashes in its manifest (edited or damaged)."""


class CacheError(BackendError):
    """The cache folder cannot be created, locked or written."""


class ToolchainUnavailable(BackendError):
    """A toolchain a backend needs (TVM, TensorRT, g++, a GPU) is missing."""

    def __init__(self, tool: str, install: str, detail: str = ""):
        msg = f"{tool} is not available: {install}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.tool = tool
        self.install = install


class PassError(TapeoutError):
    """A pass failed; names the pass, its options and the passes that ran before it."""

    def __init__(self, pass_name: str, options: str, before: list[str], cause: BaseException):
        ran = ", ".join(before) if before else "none"
        super().__init__(
            f"pass {pass_name}{options} failed: {type(cause).__name__}: {cause}\n"
            f"  passes run before it: {ran}"
        )
        self.pass_name = pass_name
        self.before = list(before)
        self.__cause__ = cause


class CalibrationError(TapeoutError):
    """Calibration data is missing, too small, of the wrong shape, or not finite."""


@dataclass(frozen=True)
class Unsupported:
    """One node a frontend or backend cannot take: its op, where it is, and why."""

    op: str
    location: str
    reason: str = ""


class UnsupportedOpsError(TapeoutError):
    """Lists *every* unsupported op, with counts and locations, not only the first."""

    def __init__(self, items: Iterable[Unsupported], what: str = "model"):
        self.items = list(items)
        counts = Counter(item.op for item in self.items)
        lines = [f"{what} has {len(self.items)} unsupported node(s) of {len(counts)} op kind(s):"]
        for op, count in sorted(counts.items()):
            entries = [item for item in self.items if item.op == op]
            reasons = sorted({item.reason for item in entries if item.reason})
            locs = ", ".join(item.location for item in entries[:5])
            more = f", ... ({count - 5} more)" if count > 5 else ""
            why = f" ({'; '.join(reasons)})" if reasons else ""
            lines.append(f"  {op} x{count}{why}: at {locs}{more}")
        super().__init__("\n".join(lines))
        self.counts = dict(counts)


class DeviceMemoryError(TapeoutError):
    """A model does not fit the memory of the devices it is cut across: the message names
    the stage, the device, what the stage needs and what the device has."""
