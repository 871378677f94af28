"""`tinc compress --config FILE`: options from a TOML or JSON file, flags over them."""

import json
import os

import pytest
import tifffile

from tinc.cli import build_parser, main
from tinc.cli_options import compress_options
from tinc.config import TincConfig, read_config_file
from tinc.errors import TincConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

TOML = """\
ratio = 16
steps = 30
batch = 8192
quiet = true
level-weights = [1, 1.5]
loss_weight = [[0, 100, 2]]
"""
SAME_AS_FLAGS = ["--ratio", "16", "--steps", "30", "--batch", "8192", "--quiet", "--level-weights", "1,1.5",
                 "--loss-weight", "0:100:2"]


@pytest.fixture
def volume_tif(tmp_path, brain32):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, brain32[:20, :24, :28])
    return path


def options_of(argv):
    return compress_options(build_parser().parse_args(["compress", "in.tif", "-o", "out.tinc", *argv]))


def test_a_config_file_gives_the_bytes_of_the_same_flags_and_flags_override_it(tmp_path, volume_tif):
    config = tmp_path / "options.toml"
    config.write_text(TOML)
    by_flags, by_file, overridden = (tmp_path / name for name in ("flags.tinc", "file.tinc", "over.tinc"))
    assert main(["compress", str(volume_tif), "-o", str(by_flags), *SAME_AS_FLAGS]) == 0
    assert main(["compress", str(volume_tif), "-o", str(by_file), "--config", str(config)]) == 0
    assert by_file.read_bytes() == by_flags.read_bytes()
    assert main(["compress", str(volume_tif), "-o", str(overridden), "--config", str(config), "--ratio", "8"]) == 0
    raw = 20 * 24 * 28 * 2
    assert 0.9 * raw / 8 <= overridden.stat().st_size <= raw / 8  # the flag's ratio, not the file's 16


def test_file_values_are_typed_as_the_flags_give_them(tmp_path):
    config = tmp_path / "options.toml"
    config.write_text(TOML)
    from_file, from_flags = options_of(["--config", str(config)]), options_of(SAME_AS_FLAGS)
    assert from_file == from_flags
    assert [type(from_file[name]) for name in ("ratio", "steps", "level_weights")] == [float, int, tuple]
    assert TincConfig.from_options(**from_file) == TincConfig.from_options(**from_flags)


def test_flags_given_on_the_command_line_override_the_file(tmp_path):
    config = tmp_path / "options.json"
    config.write_text(json.dumps({"ratio": 16, "max_error": 5, "levels": None, "layers": "auto", "seed": 3}))
    options = options_of(["--config", str(config), "--ratio", "32", "--seed", "4", "--levels", "1"])
    assert options == {"ratio": 32.0, "max_error": 5.0, "levels": 1, "layers": "auto", "seed": 4}


def test_text_values_read_as_the_flags_read_them(tmp_path):
    config = tmp_path / "text.toml"
    config.write_text('levels = "auto"\nlevel-weights = "1,1.5"\nlayers = "2,3"\ntime-limit = "none"\n'
                      'loss-weight = "0:100:2"\nvalue-range = "0,1"\nratio = "16"\n')
    assert options_of(["--config", str(config)]) == options_of(
        ["--levels", "auto", "--level-weights", "1,1.5", "--layers", "2,3", "--time-limit", "none",
         "--loss-weight", "0:100:2", "--value-range", "0,1", "--ratio", "16"]) | {"levels": None, "time_limit": None}


def test_runtime_fields_are_allowed_in_the_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('device = "cpu"\nquiet = true\ncheckpoint = "fit.ckpt"\ncheckpoint-every = 30\n')
    assert read_config_file(str(config)) == {"device": "cpu", "quiet": True, "checkpoint": "fit.ckpt",
                                             "checkpoint_every": 30.0}


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("unknown.toml", "ratio = 16\nwidth = 3\n", "unknown option 'width'"),
        ("type.toml", 'ratio = "high"\n', "ratio must be a number, got 'high'"),
        ("int.json", '{"steps": 30.5}', "steps must be an integer, got 30.5"),
        ("text.toml", 'levels = "deep"\n', "levels must be an integer, got 'deep'"),
        ("bool.json", '{"quiet": 1}', "quiet must be true or false, got 1"),
        ("pair.toml", "value-range = [0, 1, 2]\n", "value_range must be a list of 2 numbers"),
        ("value.toml", "ratio = 0.5\n", "ratio must be > 1, got 0.5"),
        ("conflict.toml", "max-error = 1\nmax_error_rel = 0.01\n", "give max_error or max_error_rel, not both"),
        ("twice.toml", "max-error = 1\nmax_error = 2\n", "max_error is given twice"),
        ("syntax.toml", "ratio == 16\n", "not valid TOML"),
        ("syntax.json", '{"ratio": 16', "not valid JSON"),
        ("list.json", "[16]", "expected a table of option names and values"),
    ],
)
def test_a_bad_file_is_a_one_line_error_naming_the_file_and_the_key(tmp_path, volume_tif, capsys, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    before = sorted(os.listdir(tmp_path))
    code = main(["compress", str(volume_tif), "-o", str(tmp_path / "x.tinc"), "--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"tinc: error: {config}: ") and message in err
    assert sorted(os.listdir(tmp_path)) == before


def test_a_missing_config_file_is_a_one_line_error(tmp_path, volume_tif, capsys):
    missing = tmp_path / "nowhere.toml"
    assert main(["compress", str(volume_tif), "-o", str(tmp_path / "x.tinc"), "--config", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"tinc: error: {missing}: no such file"
    with pytest.raises(TincConfigError, match="no such file"):
        read_config_file(str(missing))
