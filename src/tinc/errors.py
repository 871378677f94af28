"""Exceptions raised by tinc. Every user-facing failure is a `TincError`."""


class TincError(Exception):
    """Base class: the message is one line that names the problem."""


class TincInputError(TincError, ValueError):
    """The input array or file cannot be compressed (format, dtype, NaN, shape)."""


class TincFormatError(TincError, ValueError):
    """A `.tinc` file is truncated, corrupted, foreign or from a newer version."""


class TincConfigError(TincError, ValueError):
    """Options that contradict each other or the data (e.g. a budget too small)."""


class TincOutputError(TincError, OSError):
    """An output cannot be written (disk full, permissions); nothing partial is left behind."""


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (its type's name if it has none): what a one-line
    error quotes of a library's failure. A first line ending in a colon introduces a list
    (pydicom: "... raised by all available plugins:", one plugin's failure per line), which
    then follows on the same line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] + " " + "; ".join(lines[1:]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]
