"""The user docs: every relative link and anchor in README.md, docs/ and benchmarks/README.md resolves."""

import glob
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
PAGES = ["README.md", "benchmarks/README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as dashes."""
    with open(path, encoding="utf-8") as handle:
        headings = [line.lstrip("#").strip() for line in handle if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as handle:
        text = re.sub(r"```.*?```", "", handle.read(), flags=re.S)  # code blocks hold no links
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
        assert os.path.exists(resolved), f"{page}: {target} does not exist"
        if anchor and resolved.endswith(".md"):
            assert anchor in anchors(resolved), f"{page}: {target}: no such heading"


def test_readme_stays_short():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        assert len(handle.readlines()) <= 200
