"""Gateway keys: made by ``torq-fallback keys add`` (printed once, stored as a hash), asked
of every request in either API's header, limited to chains, rpm and a daily budget, and
never written anywhere: not in the log, the metrics, an error or the keys file."""

from __future__ import annotations

import json
import stat

import httpx
import pytest
from gateway_setup import chains_folder, script
from helpers import run_cli
from served import Served

from engine import ChainConfigError
from engine.gateway import load_keys
from engine.simulator import Simulator

HI = {"model": "direct", "messages": [{"role": "user", "content": "What is 2+2?"}]}


def _add(keys, name, *args):
    result = run_cli("keys", "add", name, "--keys", str(keys), *args)
    assert result.returncode == 0, result.stderr
    key, note = result.stdout.splitlines()
    assert key.startswith("tfk_") and "only time the key is shown" in note
    return key


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    keys = tmp / "keys.yaml"
    made = {
        "all": _add(keys, "all"),
        "solo": _add(keys, "solo-only", "--chains", "solo"),
        "rpm": _add(keys, "slow-team", "--rpm", "2"),
        "budget": _add(keys, "thrifty", "--daily-usd", "0.00002"),
    }
    log = tmp / "torq.jsonl"
    with Simulator(script()) as sim:
        served = Served(sim, chains_folder(tmp), "--keys", str(keys),
                        env={"TORQ_TELEMETRY_PATH": str(log)})  # fmt: skip
        try:
            yield served, made, keys, log
        finally:
            served.stop()


def _chat(served, key=None, body=HI, header="authorization"):
    headers = {}
    if key is not None:
        headers = (
            {"authorization": f"Bearer {key}"} if header == "authorization" else {"x-api-key": key}
        )
    return httpx.post(served.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def test_the_keys_file_holds_hashes_only(setup):
    _, made, keys, _ = setup
    text = keys.read_text()
    assert not any(key in text for key in made.values())
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    ring = load_keys(keys)
    assert [k.name for k in ring.keys] == ["all", "solo-only", "slow-team", "thrifty"]
    assert ring.find(made["solo"]).chains == ["solo"] and ring.find("tfk_nope") is None
    listed = run_cli("keys", "list", "--keys", str(keys)).stdout
    assert "solo-only: solo" in listed and "slow-team: every chain; rpm 2" in listed


def test_no_key_and_a_wrong_key_are_401(setup):
    served, made, _, _ = setup
    missing = _chat(served)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    wrong = _chat(served, "tfk_" + "x" * 43)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "tfk_xxx" not in wrong.text
    anthropic_style = httpx.post(served.url + "/v1/messages", headers={"x-api-key": made["all"]},
                                 json={**HI, "max_tokens": 10}, timeout=30)  # fmt: skip
    assert anthropic_style.status_code == 200
    assert _chat(served, made["all"]).status_code == 200
    assert httpx.get(served.url + "/v1/models").status_code == 401


def test_a_key_for_another_chain_is_403(setup):
    served, made, _, _ = setup
    refused = _chat(served, made["solo"])
    assert refused.status_code == 403 and "may use: solo" in refused.json()["error"]["message"]
    assert _chat(served, made["solo"], {**HI, "model": "solo"}).status_code == 200
    models = httpx.get(
        served.url + "/v1/models", headers={"authorization": f"Bearer {made['solo']}"}
    )
    assert [m["id"] for m in models.json()["data"]] == ["solo"]


def test_a_keys_rpm_and_budget_are_429_with_retry_after(setup):
    served, made, _, _ = setup
    assert [_chat(served, made["rpm"]).status_code for _ in range(2)] == [200, 200]
    over = _chat(served, made["rpm"])
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(over.headers["retry-after"]) <= 61
    first = _chat(served, made["budget"])  # an answer costs 0.000016 USD: under the budget
    assert first.status_code == 200
    second = _chat(served, made["budget"])  # the day's spend has not reached it yet
    spent = [r.status_code for r in (second, _chat(served, made["budget"]))]
    assert spent == [200, 429]  # two answers cost more than 0.00002 USD: refused from then
    refused = _chat(served, made["budget"])
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 86_400


def test_keys_never_appear_in_logs_or_metrics(setup):
    served, made, _, log = setup
    # Each test may run in its own worker, with its own gateway: this one makes its own traffic.
    assert _chat(served, made["all"]).status_code == 200
    assert _chat(served, made["solo"]).status_code == 403
    assert _chat(served, made["solo"], {**HI, "model": "solo"}).status_code == 200
    metrics = httpx.get(served.url + "/metrics").text
    assert 'torq_gateway_requests_total{api="openai",key="all",status="200"}' in metrics
    assert 'key="solo-only",status="403"' in metrics
    served.stop()
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert {line["tags"]["gateway.key"] for line in lines} >= {"all", "solo-only"}
    everything = text + metrics + served.output
    assert not any(key in everything for key in made.values())


def test_serve_refuses_to_bind_beyond_loopback_without_keys(tmp_path):
    result = run_cli(
        "serve", "--host", "0.0.0.0", "--port", "1", "--chains", str(chains_folder(tmp_path))
    )
    assert result.returncode == 2
    assert "without --keys FILE the gateway serves loopback only" in result.stderr


def test_a_bad_keys_file_is_located(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - name: a\n    sha256: nothex\n    rpn: 3\n")
    with pytest.raises(ChainConfigError) as raised:
        load_keys(keys)
    text = str(raised.value)
    assert (
        f"{keys}:3:13: keys[0].sha256:" in text and f"{keys}:4:5: keys[0].rpn: unknown key" in text
    )
    result = run_cli(
        "serve", "--keys", str(keys), "--port", "1", "--chains", str(chains_folder(tmp_path))
    )
    assert result.returncode == 2 and "keys[0].sha256" in result.stderr


@pytest.mark.parametrize("command", ["serve", "dashboard"])
def test_without_the_serve_extra_the_command_names_it(command):
    """``sys.modules[name] = None`` makes an import fail as if the package were absent."""
    import subprocess

    from helpers import PYTHON, ROOT

    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from engine.cli import main\n"
        f"sys.exit(main([{command!r}, '--port', '1']))\n"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert f"{command} needs uvicorn" in result.stderr
    assert (
        "pip install 'torq-fallback[serve]'" in result.stderr and "Traceback" not in result.stderr
    )
