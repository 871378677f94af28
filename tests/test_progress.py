"""Progress bars in logs: when standard error is not a terminal, whole lines every few
seconds or every tenth of the work, never carriage-return redraws."""

import io

import numpy as np
import pytest

import tinc
from tinc import progress


pytestmark = pytest.mark.usefixtures("one_thread")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_short_compress_logs_a_line_per_tenth_at_most(capsys):
    data = np.random.default_rng(0).random((16, 16, 8), dtype=np.float32)
    tinc.compress(data, ratio=8, steps=200, batch=1024, starts=1)  # not quiet: the bar runs
    err = capsys.readouterr().err  # pytest's capture is no terminal
    lines = [line for line in err.splitlines() if line.startswith("fitting")]
    assert "\r" not in err
    assert 2 <= len(lines) <= 12  # 0%, the tenths the updates land on (and any 5 s marks), the end
    assert lines[-1].startswith("fitting: 100% 200/200")


def test_log_lines_follow_the_clock_or_the_tenths(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    with progress.bar(total=1000, desc="fast", file=out) as bar:  # 1000 quick updates: the tenths
        for _ in range(1000):
            bar.update()
    assert [line.split()[1] for line in out.getvalue().splitlines()] == [f"{p}%" for p in range(0, 101, 10)]
    out = io.StringIO()
    with progress.bar(total=1000, desc="slow", file=out) as bar:  # 1 s per update: every 5 s
        for _ in range(20):
            clock[0] += 1.0
            bar.update()
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["0/1000", "5/1000", "10/1000", "15/1000", "20/1000"]


def test_without_a_total_lines_show_the_count_and_no_percentage():
    out = io.StringIO()
    with progress.bar(total=None, desc="open", unit="step", file=out) as bar:
        bar.update(25)
    assert out.getvalue().splitlines()[-1].startswith("open: 25 [") and "%" not in out.getvalue()


def test_a_terminal_gets_the_usual_bar():
    out = Terminal()
    with progress.bar(total=10, desc="tty", file=out) as bar:
        assert not isinstance(bar, progress.LogLines)
        bar.update(10)
    assert "\r" in out.getvalue()
