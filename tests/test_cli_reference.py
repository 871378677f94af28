"""docs/cli.md is generated from the parser: a flag changed without regenerating it fails here."""

import importlib.util
import os

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def load_generator():
    spec = importlib.util.spec_from_file_location("cli_reference", os.path.join(DOCS, "cli_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_what_the_parser_generates():
    generator = load_generator()
    with open(os.path.join(DOCS, "cli.md"), encoding="utf-8") as handle:
        written = handle.read()
    assert written == generator.render(), "docs/cli.md is out of date: run python docs/cli_reference.py"


def test_the_reference_lists_every_subcommand_and_every_compress_flag():
    from tinc.cli_options import CHUNKED_FLAGS, CONFIG_FLAGS

    text = load_generator().render()
    for command in ("compress", "decompress", "info", "eval", "bench"):
        assert f"## `tinc {command}`" in text
    for name in [*CONFIG_FLAGS, *CHUNKED_FLAGS, "config", "help_advanced"]:
        assert f"`--{name.replace('_', '-')}" in text
