"""Names and descriptions from chain files are text in every diagram format, never markup
or statements: a corpus of injection strings, put in a step's model and provider and the
chain's description, goes through the real Mermaid parser, Graphviz's own parser
(``dot -Tjson``) and into SVG, and the diagrams keep exactly their own states and edges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from helpers import ROOT

from engine import load_chain
from engine.tools.diagrams import dot_source, mermaid_source

INJECTIONS = [
    'x\n    click s0 href "javascript:alert(1)"\n    s9: hacked',
    'x"] --> evil["y',
    '"; s9 : hacked',
    "<b>bold</b><script>alert(1)</script>",
    "<<table><tr><td>x</td></tr></table>>",
    "back\\slash \\N \\G \\l \\",
    '#quot; #35; %%{init: {"securityLevel": "loose"}}%%',
    "\r\n---\ntitle: owned\n---\n",
    "line\u2028sep\u2029para",
    "{curly} [square] |pipe| `tick` ;semi",
    "end\x00nul\x1besc\x7fdel",
    "}\ndigraph evil { a -> b }",
]
STATES = {"s0", "s1", "succeeded", "exhausted", "aborted"}


def _chain(tmp_path, text: str):
    spec = {
        "description": text,
        "steps": [{"id": "first", "provider": "deepseek", "model": text}, "claude"],
    }
    path = tmp_path / "direct.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML: every character escaped as it must be
    return load_chain(path)


def _need(tool: str, why: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{why} needs {tool}, which .ci/run installs")
        pytest.skip(f"{why} needs {tool}")


def test_mermaid_keeps_its_own_states(tmp_path):
    files = []
    for number, text in enumerate(INJECTIONS):
        folder = tmp_path / str(number)
        folder.mkdir()
        source = mermaid_source(_chain(folder, text))
        statements = [line.strip() for line in source.split("stateDiagram-v2", 1)[1].splitlines()]
        assert not any(s.startswith(("click", "s9", "title", "%%", "---")) for s in statements)
        files.append(folder / "chain.mmd")
        files[-1].write_text(source)
    check = ROOT / "tests" / "mermaid"
    if not (check / "node_modules" / "mermaid").is_dir():
        if os.environ.get("CI"):
            pytest.fail("needs `npm ci --prefix tests/mermaid`, which .ci/run does")
        pytest.skip("needs `npm ci --prefix tests/mermaid`")
    _need("node", "parsing Mermaid")
    result = subprocess.run(
        ["node", str(check / "states.mjs"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(parsed) == len(INJECTIONS)
    for text, states in zip(INJECTIONS, parsed, strict=True):
        assert set(states) - {"root_start", "root_end"} == STATES, text


@pytest.mark.parametrize("text", INJECTIONS, ids=range(len(INJECTIONS)))
def test_dot_and_svg_keep_their_own_nodes_and_edges(tmp_path, text):
    _need("dot", "parsing DOT")
    source = dot_source(_chain(tmp_path, text))
    parsed = subprocess.run(
        ["dot", "-Tjson"], input=source, capture_output=True, text=True, timeout=60
    )
    assert parsed.returncode == 0, parsed.stderr
    graph = json.loads(parsed.stdout)
    names = {o["name"] for o in graph.get("objects", [])}
    assert names - {"start", "legend", "finals"} == {
        "first",
        "claude",
        "succeeded",
        "exhausted",
        "aborted",
    }
    assert len(graph.get("edges", [])) == 9  # start -> first, then 4 per step
    svg = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True, timeout=60)
    root = ET.fromstring(svg.stdout)  # well-formed XML
    tags = {element.tag.split("}")[-1] for element in root.iter()}
    assert tags <= {"svg", "g", "title", "polygon", "path", "text", "ellipse", "polyline"}
    assert not any(
        name.endswith("href") or name.startswith("on")
        for element in root.iter()
        for name in element.attrib
    )


def test_the_html_report_shows_names_as_text():
    from engine.telemetry.report import html_report

    attempt = {"provider": "<script>alert(1)</script>", "model": "m", "status": "success",
               "error_category": None, "error_code": None, "latency_ms": 5,
               "timestamp": "2026-01-01T12:00:00+00:00", "tokens_in": 0, "tokens_out": 0,
               "tokens_total": 0, "cost_usd_est": None, "state": "s"}  # fmt: skip
    line = {"v": 1, "ts": "2026-01-01T12:00:00.000+00:00", "request_id": "r",
            "chain": "<img src=x onerror=alert(1)>", "mode": "direct",
            "final_state": "succeeded", "provider": "p", "model": "m", "latency_ms": 5,
            "tokens_in": 0, "tokens_out": 0, "tokens_total": 0, "cost_usd_est": None,
            "fallback_used": False, "fallback_reason": None, "error_category": None,
            "tags": {}, "attempts": [attempt]}  # fmt: skip
    page = html_report([line])
    assert "<script" not in page and "<img" not in page
