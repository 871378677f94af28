"""Write docs/cli.md, the command-line reference, from tinc's argparse parser.

    python docs/cli_reference.py           # rewrite docs/cli.md
    python docs/cli_reference.py --check   # exit 1 if docs/cli.md differs from the parser

tests/test_cli_reference.py runs the check, so a flag changed in src/tinc/cli.py without
rerunning this script fails the tests.
"""

from __future__ import annotations

import argparse
import os
import sys

from tinc.cli import build_parser, subcommand_parsers

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cli.md")
USAGE_WIDTH = 100  # fixed, so the usage lines do not follow the terminal running the script

HEADER = """\
# Command-line reference

Generated from the parser (`src/tinc/cli.py`, `src/tinc/cli_options.py`) by
`python docs/cli_reference.py`; do not edit by hand. What the options do in detail, with
the measurements behind the defaults: [usage.md](usage.md). `tinc compress --help` lists
the options most users set; `tinc compress --help-advanced` lists them all, as below.
"""


def invocation(action: argparse.Action) -> str:
    """How an argument is written: `-o OUTPUT, --output OUTPUT`, `--quiet`, `INPUT`."""
    if not action.option_strings:
        return action.metavar or action.dest
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    if action.metavar is not None:
        metavar = action.metavar
    elif action.choices is not None:
        metavar = "{" + ",".join(action.choices) + "}"
    else:
        metavar = action.dest.upper()
    return f"{flags} [{metavar}]" if action.nargs == "?" else f"{flags} {metavar}"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_parser(name: str, parser: argparse.ArgumentParser, summary: str | None) -> list[str]:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    lines = [f"## `{name}`", ""]
    for text in (summary, parser.description):
        if text:
            lines += [cell(text), ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    for group in parser._action_groups:  # argparse keeps its groups private; the help lists them in this order
        actions = [action for action in group._group_actions
                   if action.help is not argparse.SUPPRESS and not isinstance(action, argparse._SubParsersAction)]
        if not actions:
            continue
        lines += [f"**{group.title}**", "", "| argument | meaning |", "|---|---|"]
        lines += [f"| `{invocation(action)}` | {cell(action.help or '')} |" for action in actions]
        lines.append("")
    return lines


def render() -> str:
    """The whole of docs/cli.md."""
    parser = build_parser(show_advanced=True)
    summaries = {action.dest: action.help for action in parser._subparsers._group_actions[0]._choices_actions}
    lines = HEADER.splitlines() + [""] + render_parser("tinc", parser, None)
    for name, subparser in subcommand_parsers(parser).items():
        lines += render_parser(f"tinc {name}", subparser, summaries.get(name))
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = render()
    if check:
        with open(OUTPUT, encoding="utf-8") as handle:
            if handle.read() != text:
                print(f"{OUTPUT} is out of date with the parser: run python docs/cli_reference.py", file=sys.stderr)
                return 1
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as handle:
        handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
