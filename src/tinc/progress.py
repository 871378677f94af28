"""Progress bars that suit where standard error goes.

On a terminal (or in a notebook) a normal tqdm bar. Elsewhere (CI, batch jobs, `2> log`)
tqdm would still redraw with carriage returns many times a second, which a log keeps as
thousands of updates on one line; there `LogLines` prints whole lines instead, one every
`LOG_SECONDS` or every tenth of the total, whichever comes first, and one at the end.
"""

from __future__ import annotations

import sys
import time

import tqdm.auto as _auto
from tqdm import tqdm as _plain_tqdm

LOG_SECONDS = 5.0
LOG_FRACTION = 0.1
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
LOG_FORMAT_OPEN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


class LogLines(_plain_tqdm):
    """tqdm printing newline-terminated lines at most every `LOG_SECONDS` or `LOG_FRACTION`."""

    def __init__(self, *args, **kwargs):
        self._printed_at = -float("inf")
        self._printed_n = None
        # every update reaches `display`, which decides; tqdm's own rate limits would AND the two
        kwargs.update(mininterval=0, miniters=1, dynamic_ncols=False)
        # no bar graphic: a log reads the numbers (and a fit bounded by time has no total)
        kwargs.setdefault("bar_format", LOG_FORMAT if kwargs.get("total") else LOG_FORMAT_OPEN)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None) -> bool:
        if msg == "":  # tqdm clearing the bar on close: a log has nothing to clear
            return False
        now = time.monotonic()
        step = (self.total or 0) * LOG_FRACTION
        due = (self._printed_n is None or now - self._printed_at >= LOG_SECONDS
               or (step > 0 and self.n - self._printed_n >= step))
        if due and self.n != self._printed_n or msg is not None:
            self._print(msg)
        return True

    def _print(self, msg=None) -> None:
        # marked printed first: a signal raised inside the write (SIGTERM as an exception)
        # must not make `close` print the same line again after the error message
        self._printed_at, self._printed_n = time.monotonic(), self.n
        self.fp.write((self.__str__() if msg is None else msg).strip("\r") + "\n")
        self.fp.flush()

    def close(self) -> None:
        if not self.disable and self.n != self._printed_n:
            self._print()  # the final count
        self.leave = False  # tqdm would redraw the last line once more
        super().close()


def bar(*, file=None, **kwargs):
    """A tqdm bar on `file` (default: standard error): `LogLines` unless it is a terminal."""
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    terminal = bool(isatty and isatty())
    if terminal or _auto.notebook_tqdm is not _auto.std_tqdm:  # a terminal, or a notebook's widget
        return _auto.tqdm(file=file, **kwargs)
    return LogLines(file=file, **kwargs)
