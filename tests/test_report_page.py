"""``stats --html``: the page an on-call engineer opens first. What it covers, what needs
attention, the providers table, the paths taken; colours that say what an outcome is (a
breaker's skip is grey, never green) and legends as large as the axes, checked in headless
Chromium; and on a plain install, a clear word about the ``report`` extra."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from helpers import PYTHON, ROOT, Scripted, chains_dir, run_cli

from engine import LLMManager, ProviderError

SUCCESS_GREEN = "rgb(46, 125, 50)"


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """30 requests: deepseek always fails (503) until its breaker opens and skips it, claude
    answers, one request in five goes to research (claude, then openai)."""
    tmp = tmp_path_factory.mktemp("report")
    folder = chains_dir(tmp, {"direct": "steps: [deepseek, claude]\n",
                              "research": "steps: [claude, openai]\n"})  # fmt: skip
    path = tmp / "torq.jsonl"
    boom = ProviderError("down", code="503")
    providers = {
        "deepseek": Scripted(*[boom] * 30),
        "claude": Scripted(*[ProviderError("busy", code="529"), *["ok"] * 40]),
        "openai": Scripted(*["ok"] * 10),
    }
    config = {"chains_dir": str(folder), "telemetry": {"path": str(path)}, "providers": providers}
    with LLMManager(config) as manager:
        for i in range(30):
            manager.generate_response("hi", mode="research" if i % 5 == 0 else "direct")
    return path


@pytest.fixture(scope="module")
def page(log, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "report.html"
    result = run_cli("stats", str(log), "--html", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_the_page_says_what_it_covers_and_what_needs_attention(page, log):
    text = page.read_text()
    assert re.search(
        r"30 requests from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s\)",
        text,
    )
    assert f"read from {log}" in text
    attention = text.split("<h2>Needs attention</h2>", 1)[1].split("</ul>", 1)[0]
    items = re.findall(r"<li>([^<]+)</li>", attention)
    assert items[0].startswith("deepseek: ") and "attempts failed (provider_error:503 x" in items[0]
    assert any(re.match(r"deepseek: skipped \d+ times without a call \(circuit_open x\d+\)", i)
               for i in items)  # fmt: skip


def test_the_providers_table_and_the_paths_taken(page, log):
    text = page.read_text()
    report = json.loads(run_cli("stats", str(log), "--json").stdout)
    deepseek = report["providers"]["deepseek"]
    row = re.search(r'<table id="providers">.*?<tr><td>deepseek</td>(.*?)</tr>', text).group(1)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[0] == str(deepseek["attempts"]) and cells[3] == str(deepseek["skipped"])
    assert cells[1] == "0" and cells[2] == str(deepseek["attempts"] - deepseek["skipped"])
    assert cells[8].startswith("provider_error:503 x") and cells[9].startswith("circuit_open x")
    paths = re.findall(r'<tr><td>(\w+)</td><td class="text">([^<]+)</td><td>(\d+)</td>', text)
    assert ("research", "claude (success) -&gt; succeeded") in [(c, p) for c, p, _ in paths]
    assert any(p == "deepseek (skipped: circuit_open) -&gt; claude (success) -&gt; succeeded"
               for _, p, _ in paths)  # fmt: skip
    assert sum(int(n) for c, _, n in paths if c == "direct") == 24
    assert "<script" not in text and not re.search(r'(src|href)="https?://', text)  # offline


#: Each outcome series of the outcomes chart and its fill (a hatched one: its pattern's).
_FILLS = """() => [...document.querySelectorAll('#chart-outcomes g[id^="outcome-"]')].map(g => {
  const shape = g.querySelector('path');
  let fill = getComputedStyle(shape).fill;
  const ref = fill.match(/url\\("?#([^")]+)"?\\)/);
  if (ref) fill = getComputedStyle(document.getElementById(ref[1]).querySelector('rect')).fill;
  return [g.id, fill];
})"""

#: Rendered size (CSS px) of every legend and axis text of the charts.
_TEXT = """() => [...document.querySelectorAll('section.chart svg')].flatMap(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].map(
    t => [t.textContent, parseFloat(getComputedStyle(t).fontSize) * scale]);
})"""


def test_in_a_browser_skips_are_grey_and_legends_legible(chromium, page):
    tab = chromium.new_page(viewport={"width": 1280, "height": 900})
    try:
        tab.goto(page.as_uri())
        charts = tab.eval_on_selector_all("section.chart h2", "hs => hs.map(h => h.textContent)")
        assert charts == [
            "Requests over time",
            "Outcomes of each provider's attempts",
            "Attempt latency per provider over time (p50 solid, p95 dashed, p99 dotted)",
            "Fallback rate per chain over time",
        ]
        fills = dict(tab.evaluate(_FILLS))
        assert fills["outcome-success"] == SUCCESS_GREEN
        skip = fills["outcome-skipped:_circuit_open"]
        red, green, blue = map(int, re.findall(r"\d+", skip))
        assert red == green == blue, f"a skip is drawn {skip}, not grey"
        assert fills["outcome-provider_error:503"] not in (SUCCESS_GREEN, skip)
        sizes = dict(tab.evaluate(_TEXT))
        for label in ("success", "skipped: circuit_open", "deepseek", "research"):
            assert sizes[label] >= 12, f"legend {label!r} is {sizes[label]:.1f} px"
        width = tab.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], "the page scrolls sideways at 1280 px"
        assert len(tab.screenshot(full_page=True)) > 50_000
    finally:
        tab.close()


def test_without_matplotlib_the_report_names_the_extra(log, tmp_path):
    """The plain install has no matplotlib: ``sys.modules[name] = None`` is how Python makes
    an import fail as if the package were not installed."""
    out = tmp_path / "report.html"
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from engine.tools.cli import main\n"
        f"sys.exit(main(['stats', {str(log)!r}, '--html', {str(out)!r}]))\n"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "--html needs matplotlib" in result.stderr
    assert "pip install 'torq-fallback[report]'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
