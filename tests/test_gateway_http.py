"""The gateway on the wire, below the SDKs: curl's raw SSE bytes, what reaches the provider,
hostile input answered in one line of the caller's format, a client hanging up (the
provider sees the hang-up), SIGTERM draining open streams, and the app mounted in a
Starlette application."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest
from gateway_setup import chains_folder, script
from served import Served

from engine.simulator import Simulator, fake_key

HI = {"model": "direct", "messages": [{"role": "user", "content": "What is 2+2?"}]}


@pytest.fixture(scope="module")
def sim():
    with Simulator(script()) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def gateway(sim, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    served = Served(sim, chains_folder(tmp), "--max-body-bytes", "65536",
                    env={"TORQ_TELEMETRY_PATH": str(tmp / "torq.jsonl")})  # fmt: skip
    served.log = tmp / "torq.jsonl"
    try:
        yield served
    finally:
        served.stop()


def _curl(url: str, body: dict) -> bytes:
    result = subprocess.run(
        ["curl", "-sS", "-N", "--fail-with-body", "-H", "content-type: application/json",
         "-d", json.dumps(body), url],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_curl_sees_openais_exact_stream(gateway):
    raw = _curl(gateway.url + "/v1/chat/completions", {**HI, "stream": True})
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    frames = [json.loads(e.removeprefix(b"data: ")) for e in events[:-2]]
    assert all(e.startswith(b"data: {") for e in events[:-2])
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(f["choices"][0]["delta"].get("content", "") for f in frames if f["choices"]) == "4"
    )
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"
    assert frames[-1]["choices"] == [] and frames[-1]["usage"] is None  # usage was not asked
    assert frames[-1]["torq"]["provider"] == "deepseek"
    assert {f["id"] for f in frames} == {frames[0]["id"]}


def test_curl_sees_anthropics_event_sequence(gateway):
    raw = _curl(gateway.url + "/v1/messages", {**HI, "max_tokens": 20, "stream": True})
    names = [
        line.removeprefix(b"event: ").decode()
        for line in raw.split(b"\n")
        if line.startswith(b"event: ")
    ]
    assert names == ["message_start", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    delta = json.loads(raw.split(b"event: message_delta\ndata: ")[1].split(b"\n")[0])
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] == 7
    assert delta["torq"]["chain"] == "direct"


def test_what_reaches_the_provider(gateway, sim):
    before = len(sim.requests)
    body = {**HI, "seed": 42, "temperature": 0.2, "top_p": 0.9, "max_tokens": 30, "stop": ["END"],
            "user": "alice", "response_format": {"type": "json_object"}}  # fmt: skip
    reply = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    sent = sim.requests[before].body
    assert (sent["seed"], sent["temperature"], sent["top_p"], sent["max_tokens"]) == (
        42,
        0.2,
        0.9,
        30,
    )
    assert sent["stop"] == ["END"] and sent["response_format"] == {"type": "json_object"}
    assert "user" not in sent  # recorded in the request's tags, for the log
    assert reply.json()["torq"]["tags"]["user"] == "alice"
    assert sim.requests[before].key_sent  # the provider's key stays on the gateway ...
    assert fake_key("deepseek").encode() not in reply.content  # ... and never comes back


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"x" * 70_000, 413, "request_too_large"),
        (b'{"model": "direct", "messages": [', 400, "invalid_json"),
        (b"[" * 5_000 + b"]" * 5_000, 400, "invalid_json"),
        (json.dumps({"model": "direct", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}]}).encode(), 400,
         "invalid_request"),
        (json.dumps({"model": "direct", "messages": "hi"}).encode(), 400, "invalid_request"),
    ],
    ids=["too-large", "broken", "deep", "image", "not-a-list"],
)  # fmt: skip
def test_hostile_bodies_get_one_line_in_the_apis_format(gateway, content, status, code):
    reply = httpx.post(gateway.url + "/v1/chat/completions", content=content, timeout=30)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == code and "\n" not in error["message"] and len(error["message"]) < 500
    anthropic = httpx.post(gateway.url + "/v1/messages", content=content, timeout=30)
    assert anthropic.status_code == status and anthropic.json()["type"] == "error"


def test_a_header_flood_is_refused(gateway):
    headers = {f"x-flood-{i}": "y" * 200 for i in range(400)}
    reply = httpx.post(gateway.url + "/v1/chat/completions", json=HI, headers=headers, timeout=30)
    assert reply.status_code == 431 and reply.json()["error"]["code"] == "headers_too_large"


def test_slow_clients_hold_no_one_else_up(gateway):
    """Fifty connections trickling their heads (slowloris) cost a socket each: the gateway
    answers everyone else meanwhile."""
    slow = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    try:
        reply = httpx.post(gateway.url + "/v1/chat/completions", json=HI, timeout=10)
        assert reply.status_code == 200
    finally:
        for sock in slow:
            sock.close()


def _open_connections_drop(sim: Simulator, start: int, within: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < within:
        if sim.open_connections < start:
            return time.monotonic() - began
        time.sleep(0.005)
    return None


def test_a_client_hanging_up_mid_stream_cancels_the_upstream_call(gateway, sim):
    body = {"model": "direct", "stream": True,
            "messages": [{"role": "user", "content": "SLOW story"}]}  # fmt: skip
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", gateway.url + "/v1/chat/completions", json=body) as reply,
    ):
        lines = reply.iter_lines()
        assert next(lines).startswith("data: ")  # the stream has started upstream
        upstream = sim.open_connections
        assert upstream >= 1
        reply.close()  # the client hangs up, 38 chunks (about 2 s) before the end
        took = _open_connections_drop(sim, upstream, within=1.5)
    # the simulator saw its connection close long before the answer would have ended
    assert took is not None, "the upstream connection stayed open after the client left"
    logged = _logged(gateway.log, lambda line: line["tags"].get("gateway.client") == "hung_up")
    assert logged is not None, "the hung-up request was never logged"
    assert logged["final_state"] == "cancelled" and logged["chain"] == "direct"
    assert logged["tags"]["gateway.api"] == "openai" and logged["attempts"]


def test_a_client_hanging_up_before_a_whole_answer_cancels_the_upstream_call(gateway, sim):
    body = {"model": "direct", "messages": [{"role": "user", "content": "WAIT for it"}]}
    before = sim.hung_up
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.5 s, of 3
        httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=0.5)
    deadline = time.monotonic() + 2.0  # the simulator notices the closed socket by polling
    while sim.hung_up == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.hung_up == before + 1, "the upstream call went on after the client left"
    logged = _logged(gateway.log, lambda line: line["tags"].get("gateway.client") == "hung_up"
                     and line["tags"]["gateway.stream"] == "false")  # fmt: skip
    assert logged is not None and logged["final_state"] == "cancelled"
    (left,) = logged["attempts"]
    assert (left["provider"], left["status"], left["error_code"]) == (
        "deepseek", "cancelled", "caller_left")  # fmt: skip
    # the gateway goes on serving: the next request is answered
    assert httpx.post(gateway.url + "/v1/chat/completions", json=HI, timeout=10).status_code == 200


def _logged(path, wanted, within=5.0):
    """The first line of the JSONL log that ``wanted`` accepts, waiting for the writer."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            for text in path.read_text().splitlines():
                line = json.loads(text)
                if wanted(line):
                    return line
        time.sleep(0.05)
    return None


def test_sigterm_lets_twenty_open_streams_finish(sim, tmp_path):
    served = Served(sim, chains_folder(tmp_path), "--drain-timeout", "20")
    body = {"model": "direct", "stream": True,
            "messages": [{"role": "user", "content": "LONG story"}]}  # fmt: skip
    results: list[bytes] = []
    started = threading.Barrier(21)

    def stream() -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", served.url + "/v1/chat/completions", json=body) as reply,
        ):
            chunks = reply.iter_bytes()
            first = next(chunks)
            started.wait()
            results.append(first + b"".join(chunks))

    threads = [threading.Thread(target=stream) for _ in range(20)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)  # all 20 streams have sent their first chunk
    _out, err = served.stop(timeout=60)  # SIGTERM, mid-way through every stream
    for thread in threads:
        thread.join(timeout=60)
    # uvicorn drains, then ends as the signal asked (the signal's own exit status)
    assert served.proc.returncode in (0, -signal.SIGTERM), err
    assert len(results) == 20
    cut = [
        r[-200:] for r in results if not r.endswith(b"data: [DONE]\n\n") or b'data: {"error"' in r
    ]
    assert not cut, cut[:2]


def test_mounted_in_a_starlette_app(sim, tmp_path, monkeypatch):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from engine import LLMManager
    from engine.gateway import create_app

    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    manager = LLMManager({"chains_dir": str(chains_folder(tmp_path))})
    host = Starlette(routes=[Mount("/llm", app=create_app(manager))])
    server = uvicorn.Server(uvicorn.Config(host, port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reply = httpx.post(f"http://127.0.0.1:{port}/llm/v1/chat/completions", json=HI, timeout=30)
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "4"
        assert httpx.get(f"http://127.0.0.1:{port}/llm/healthz").json() == {"status": "alive"}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        asyncio.run(manager.aclose())
