"""The documentation site as a reader meets it, built strictly: the API reference reads as
written (docstrings are Markdown, names in backticks, so no reST role such as ``:class:``
shows up literally; a class shows its public bases, never a private helper it stands on),
and no code block is cut off behind a scroll bar (checked in headless Chromium)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from helpers import PYTHON, ROOT

ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj|ref):`")


def test_no_docstring_uses_a_rest_role():
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, "write `Name`, not :class:`Name` (the reference is Markdown): " + ", ".join(
        found
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [PYTHON, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return site


@pytest.fixture(scope="module")
def api_page(site):
    return (site / "api" / "index.html").read_text(encoding="utf-8")


def test_the_reference_shows_no_role_and_no_private_base(api_page):
    text = re.sub(r"<[^>]+>", "", api_page)
    assert not re.search(r":(?:class|meth|func|mod|data|attr|exc|obj):\S", text), "a reST role"
    bases = re.findall(r"Bases: ([^\n]+)", text)
    assert bases, "the reference lists no bases at all"
    assert not [b for b in bases if re.search(r"(^|[\s,])_\w", b)], bases
    assert "Bases: BaseModel" in text  # a private base gives way to its own public one
    assert "Bases: TorqError" in text  # ProviderError and its siblings


#: Code blocks wider than their box: what a reader could only see by scrolling sideways.
_CUT = """() => [...document.querySelectorAll('pre > code')]
  .filter(code => code.scrollWidth > code.clientWidth + 1)
  .map(code => code.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a)))"""


def test_no_code_block_is_cut_off(chromium, site):
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    cut = {}
    try:
        for html in sorted(site.glob("*/index.html")):
            page.goto(html.as_uri())
            lines = page.evaluate(_CUT)
            if lines:
                cut[html.parent.name] = [line[:60] for line in lines]
    finally:
        page.close()
    assert len(list(site.glob("*/index.html"))) >= 15
    assert not cut, f"code blocks cut off at 1280 px: {cut}"
