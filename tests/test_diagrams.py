"""Diagrams: the DOT's nodes and edges match each chain exactly (parsed, not eyeballed),
outputs are byte-identical across runs, paths are highlighted, and the committed schema
and diagrams are current."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
from helpers import CHAINS, ROOT
from ruamel.yaml import YAML

from engine import Chain, load_chain
from engine.chain.loader import load_chains
from engine.chain.schema import chain_json_schema, schema_text
from engine.tools.diagrams import (
    COLOURS,
    Highlight,
    dot_source,
    highlight_from_attempts,
    mermaid_source,
    render,
    render_all,
)

DEFAULTS = sorted(load_chains(CHAINS).items())
CUSTOM = """
description: Custom jumps and retries.
deadline: 50
error_codes: {"404": non_retryable}
defaults: {timeout: 10}
steps:
  - id: fast
    provider: openai
    model: gpt-4.1-mini
    retries: 2
    retry_timeouts: true
    goto: {timeout: local, non_retryable: careful}
  - id: careful
    provider: claude
    retries: 1
    goto: {retryable: local}
  - deepseek
  - id: local
    provider: ollama
    goto: {retryable: exhausted, non_retryable: next}
"""

EDGE = re.compile(r'^\s*"?([\w.-]+)"? -> "?([\w.-]+)"? \[label="?([^"\]]*?)"? (.*)\]$')
NODE = re.compile(r'^\s*"?([\w.-]+)"? \[label=(?:"((?:[^"\\]|\\.)*)"|(\w+))')


def parse_dot(source: str) -> tuple[dict[str, str], Counter]:
    nodes: dict[str, str] = {}
    edges: Counter = Counter()
    for line in source.splitlines():
        if line.strip().startswith("start ->"):
            continue
        if "->" in line:
            match = EDGE.match(line)
            assert match, line
            src, dst, label, attrs = match.groups()
            category = label.split(":")[0].split()[0]
            colour = re.search(r'color="(#\w+)"', attrs).group(1)
            assert COLOURS[category] == colour, line
            kind = "retry" if src == dst else "route"
            edges[(src, category, dst, kind)] += 1
        else:
            match = NODE.match(line)
            if match and match.group(1) not in ("start", "legend", "node", "edge"):
                nodes[match.group(1)] = match.group(2) or match.group(3)
    return nodes, edges


def expected_edges(chain: Chain) -> Counter:
    """Straight from the resolved spec, not from the machine."""
    edges: Counter = Counter()
    for step in chain.steps:
        edges[(step.id, "success", "succeeded", "route")] += 1
        for category in ("retryable", "timeout", "non_retryable"):
            retries = step.retries > 0 and category != "non_retryable"
            if category == "timeout":
                retries = retries and step.retry_timeouts
            if retries:
                edges[(step.id, category, step.id, "retry")] += 1
            edges[(step.id, category, step.routes[category], "route")] += 1
    return edges


@pytest.fixture
def custom(tmp_path) -> Chain:
    path = tmp_path / "custom.yaml"
    path.write_text(CUSTOM)
    return load_chain(path)


def chains_under_test(custom: Chain) -> list[Chain]:
    return [chain for _, chain in DEFAULTS] + [custom]


def test_dot_nodes_and_edges_match_every_chain_exactly(custom):
    for chain in chains_under_test(custom):
        nodes, edges = parse_dot(dot_source(chain))
        assert set(nodes) == {s.id for s in chain.steps} | {"succeeded", "exhausted", "aborted"}
        assert edges == expected_edges(chain), chain.name
        for step in chain.steps:
            label = nodes[step.id]
            assert label.startswith(step.id)
            assert f"timeout: {step.timeout:g} s" in label and f"retries: {step.retries}" in label
            from engine.providers.settings import BUILTIN_SETTINGS

            builtin = BUILTIN_SETTINGS.get(step.provider)
            default = f"{builtin.model} (its default)" if builtin else "the provider's default"
            assert f"model: {step.model or default}" in label


def test_custom_jumps_are_drawn_as_written(custom):
    _, edges = parse_dot(dot_source(custom))
    assert edges[("fast", "timeout", "local", "route")] == 1
    assert edges[("fast", "timeout", "fast", "retry")] == 1
    assert edges[("fast", "non_retryable", "careful", "route")] == 1
    assert edges[("careful", "retryable", "local", "route")] == 1
    assert edges[("careful", "timeout", "careful", "retry")] == 0  # retry_timeouts is off
    assert edges[("local", "non_retryable", "exhausted", "route")] == 1
    # two categories between the same two steps stay two edges
    assert edges[("fast", "retryable", "careful", "route")] == 1
    header = dot_source(custom).split("label=", 1)[1].split("</table>>", 1)[0]
    assert "<b>chain &#x27;custom&#x27;: Custom jumps and retries.</b>" in header
    assert '<td align="center">deadline 50 s for the whole chain' in header
    # the key is a line of the header, not a node ranked beside the steps
    assert "━━ success" in header and "legend" not in dot_source(custom)


def test_outputs_are_byte_identical_across_runs(custom, graphviz_dot):
    for fmt in ("dot", "mermaid", "svg"):
        assert render(custom, fmt) == render(load_chain(custom.source), fmt)


def test_mermaid_has_every_edge(custom):
    text = mermaid_source(custom)
    assert text.startswith("---\ntitle: \"chain 'custom'")
    assert "stateDiagram-v2" in text
    arrows = [line for line in text.splitlines() if " --> " in line and "[*]" not in line]
    assert len(arrows) == sum(expected_edges(custom).values())
    assert "linkStyle" not in text  # unsupported in stateDiagram-v2 (mermaid-js #1352)


def test_a_runs_path_is_highlighted(custom):
    attempts = [
        {"state": "fast", "category": "timeout", "next": "fast"},
        {"state": "fast", "category": "timeout", "next": "local"},
        {"state": "local", "category": "success", "next": "succeeded"},
    ]
    highlight = highlight_from_attempts(attempts)
    assert highlight == Highlight(
        (
            ("fast", "timeout", "fast"),
            ("fast", "timeout", "local"),
            ("local", "success", "succeeded"),
        ),
        "succeeded",
    )
    dot = dot_source(custom, highlight)
    bold = [line for line in dot.splitlines() if "penwidth=3" in line]
    assert len(bold) == 3
    assert any("[#1]" in line and "fast -> fast" in line for line in bold)
    assert any("[#2]" in line and "fast -> local" in line for line in bold)
    assert "class " in mermaid_source(custom, highlight) and "taken" in mermaid_source(
        custom, highlight
    )


def test_committed_mermaid_diagrams_are_current():
    assert render_all(dict(DEFAULTS), ROOT / "diagrams", ["mermaid"], check=True) == []


def test_committed_diagrams_are_current(graphviz_dot):
    assert render_all(dict(DEFAULTS), ROOT / "diagrams", ["svg", "mermaid"], check=True) == []


def test_committed_schema_is_current_and_validates_the_chains():
    committed = (CHAINS / "chain.schema.json").read_text()
    assert committed == schema_text()
    schema = json.loads(committed)
    yaml = YAML(typ="safe", pure=True)
    for path in sorted(CHAINS.glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=./chain.schema.json")
        jsonschema.validate(yaml.load(path.read_text()), schema)
    jsonschema.validate(["deepseek", {"provider": "openai", "retries": 1}], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"steps": ["deepseek"], "deadlin": 3}, schema)
    assert chain_json_schema()["title"] == "torq-fallback chain"


def test_malformed_corpus_is_rejected_by_the_schema_too():
    schema = json.loads((CHAINS / "chain.schema.json").read_text())
    yaml = YAML(typ="safe", pure=True)
    for name in (
        "unknown_top_key",
        "unknown_step_key",
        "negative_retries",
        "zero_timeout",
        "empty_steps",
    ):
        data = yaml.load((Path(__file__).parent / "malformed" / f"{name}.yaml").read_text())
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_mermaid_parses_in_the_real_mermaid(tmp_path, custom):
    """Every kind of generated Mermaid (plain, custom routes and retries, a path, the
    breaker) through the pinned Mermaid parser in Node (tests/mermaid; .ci/run installs it)."""
    import os
    import shutil
    import subprocess

    from helpers import ROOT

    from engine.tools.diagrams import highlight_from_attempts, mermaid_source, render_breaker

    check = ROOT / "tests" / "mermaid"
    if shutil.which("node") is None or not (check / "node_modules" / "mermaid").is_dir():
        message = "needs node and `npm ci --prefix tests/mermaid`"
        if os.environ.get("CI"):
            pytest.fail(message + ", which .ci/run does")
        pytest.skip(message)
    files = []
    for chain in chains_under_test(custom):
        path = tmp_path / f"{chain.name}.mmd"
        path.write_text(mermaid_source(chain))
        files.append(path)
    attempts = [{"state": custom.steps[0].id, "category": "retryable", "next": custom.steps[0].id},
                {"state": custom.steps[0].id, "category": "timeout", "next": "local"}]  # fmt: skip
    path = tmp_path / "path.mmd"
    path.write_text(mermaid_source(custom, highlight_from_attempts(attempts)))
    files.append(path)
    (tmp_path / "breaker.mmd").write_bytes(render_breaker("mermaid"))
    files.append(tmp_path / "breaker.mmd")
    result = subprocess.run(
        ["node", str(check / "check.mjs"), *map(str, files)], capture_output=True, text=True, timeout=120
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok: ") == len(files)
