"""The official ``openai`` npm package (pinned in tests/gateway_node, installed by .ci/run
with ``npm ci``), run with node against a ``serve`` subprocess: a chat with the headers, a
stream with usage and the history in its last chunk, and a tool call."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from gateway_setup import chains_folder, script
from helpers import ROOT
from served import Served

from engine.simulator import Simulator

CLIENT = ROOT / "tests" / "gateway_node"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (CLIENT / "node_modules" / "openai").is_dir():
        message = "needs node and `npm ci --prefix tests/gateway_node`"
        if os.environ.get("CI"):
            pytest.fail(message + ", which .ci/run does")
        pytest.skip(message)
    return node


def test_the_openai_npm_package(tmp_path):
    node = _node()
    with Simulator(script()) as sim, Served(sim, chains_folder(tmp_path)) as served:
        result = subprocess.run([node, str(CLIENT / "client.mjs"), served.url],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert (seen["text"], seen["provider"], seen["reason"]) == ("4", "openai", "provider_error:429")
    assert seen["attempts"] == ["failed", "success"]
    assert (
        seen["streamed"].startswith("Once upon a time") and seen["usage"]["completion_tokens"] > 0
    )
    assert seen["lastTorq"] == "direct"
    assert seen["tool"]["name"] == "get_weather" and json.loads(seen["tool"]["arguments"]) == {
        "city": "Paris"
    }
