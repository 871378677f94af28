import numpy as np
import pytest

import tinc
from tinc import metrics
from tinc.cli import main
from tinc.errors import TincConfigError
from tinc.target import RATIO_TOLERANCE

from conftest import FAST


@pytest.fixture(scope="module")
def crop(brain64) -> np.ndarray:
    return np.ascontiguousarray(brain64[20:44, 20:44, 20:44])


def test_target_psnr_picks_the_smallest_passing_file_and_brackets_it(crop):
    # a target just below what ratio 8 reaches, so the search must climb and bisect
    reference = tinc.decompress(tinc.compress(crop, ratio=8, **FAST))
    target = metrics.psnr(crop, reference) - 1.0
    codec = tinc.TincCodec(ratio=8, target_psnr=target, **FAST)
    data = codec.encode(crop)
    search = codec.report.target_search
    assert metrics.psnr(crop, tinc.decompress(data)) >= target
    passing = [t for t in search.trials if t.psnr >= target]
    assert len(data) == search.chosen.nbytes == min(t.nbytes for t in passing)
    failing_above = [t.ratio for t in search.trials if t.psnr < target and t.ratio > search.chosen.ratio]
    assert failing_above and min(failing_above) <= search.chosen.ratio * RATIO_TOLERANCE * 1.001 or search.chosen.ratio >= 2**16


def test_unreachable_target_psnr_is_a_clear_error(crop):
    with pytest.raises(TincConfigError, match="not reached"):
        tinc.compress(crop, ratio=4, target_psnr=300, **FAST)


def test_cli_target_psnr(crop, tmp_path, capsys):
    source, output = tmp_path / "crop.npy", tmp_path / "crop.tinc"
    np.save(source, crop)
    assert main(["compress", str(source), "-o", str(output), "--ratio", "8", "--target-psnr", "20",
                 "--steps", "20", "--batch", "4096"]) == 0
    assert output.exists() and "trials for 20 dB" in capsys.readouterr().out
    assert main(["compress", str(source), "-o", str(output), "--target-psnr", "-3"]) == 2
