"""Gateways that share Redis behave as one deployment: a breaker opened through one is seen
by the other, a key's rpm holds across both, and one active prober (for the whole
deployment) brings a recovered provider back for both; ``--workers N`` shares the same way,
and ``/readyz`` says which health a worker uses."""

from __future__ import annotations

import time

import httpx
from gateway_setup import chains_folder, script
from helpers import run_cli
from served import Served

from engine.simulator import Simulator

PROVIDERS = """providers:
  deepseek:
    breaker: {failure_threshold: 2, cooldown: 600, cooldown_max: 600}
    health_check: {interval: 0.4}
"""
CHAINS = {"direct": "steps: [deepseek, openai]\n", "default": "steps: [deepseek, openai]\n"}


def _ask(served, prompt, key=None):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": "direct", "messages": [{"role": "user", "content": prompt}]}
    return httpx.post(served.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


def _probes(served) -> float:
    text = httpx.get(served.url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("torq_health_probes_total{"))  # fmt: skip


def test_two_gateways_share_breakers_quotas_and_one_prober(tmp_path, redis_server):
    folder = chains_folder(tmp_path, CHAINS, PROVIDERS)
    keys = tmp_path / "keys.yaml"
    limited = run_cli("keys", "add", "team", "--keys", str(keys), "--rpm", "3").stdout.split()[0]
    ops = run_cli("keys", "add", "ops", "--keys", str(keys)).stdout.split()[0]
    env = {"TORQ_REDIS_URL": redis_server.url}
    with Simulator(script()) as sim:
        one = Served(sim, folder, "--keys", str(keys), env=env)
        two = Served(sim, folder, "--keys", str(keys), env=env)
        try:
            ready = httpx.get(two.url + "/readyz").json()
            assert ready["ready"] and ready["redis"] == "reachable"
            assert ready["health"].startswith("shared through Redis at 127.0.0.1:")
            # a key's rpm holds across both
            codes = [_ask(g, "What is 2+2?", limited).status_code for g in (one, one, two, two)]
            assert codes == [200, 200, 200, 429]
            # deepseek's breaker opened through one (deepseek down: two 503s) ...
            sim.outage("deepseek")
            for _ in range(2):
                assert _ask(one, "What is 2+2?", ops).headers["x-torq-provider"] == "openai"
            # ... is open for the other too: skipped there without a call
            calls = sim.requests.copy()
            reply = _ask(two, "What is 2+2?", ops)
            assert reply.headers["x-torq-fallback-reason"] == "provider_error:circuit_open"
            assert [r.provider for r in sim.requests[len(calls) :]] == ["openai"]
            headers = {"authorization": f"Bearer {ops}"}
            seen = httpx.get(two.url + "/v1/torq/health", headers=headers).json()
            deepseek = next(r for r in seen["providers"] if r["provider"] == "deepseek")
            assert deepseek["state"] == "open" and "2 failures in a row" in deepseek["why"]
            assert deepseek["next_probe_in_s"] is not None
            # one prober for the deployment: about one probe per interval between both
            before = _probes(one) + _probes(two)
            time.sleep(2.4)
            probes = _probes(one) + _probes(two) - before
            assert 1 <= probes <= 2.4 / 0.4 + 2, probes  # two probers would make about 12
            # the provider recovers: the prober's answer half-opens it for both
            sim.outage("deepseek", down=False)
            deadline = time.monotonic() + 5
            row = deepseek
            while time.monotonic() < deadline and row["state"] == "open":
                time.sleep(0.1)
                state = httpx.get(two.url + "/v1/torq/health", headers=headers).json()
                row = next(r for r in state["providers"] if r["provider"] == "deepseek")
            assert row["state"] in ("half_open", "closed"), row
            # Both route to deepseek again. Each gateway's read of the shared record may be
            # reused for the store's cache_ttl (50 ms), so a request that follows another
            # gateway's recovering probe by less may still see it half-open: asked again.
            for gateway in (one, two):
                deadline, answered = time.monotonic() + 2, []
                while time.monotonic() < deadline and answered[-1:] != ["deepseek"]:
                    reply = _ask(gateway, "What is 2+2?", ops)
                    answered.append(reply.headers["x-torq-provider"])
                    time.sleep(0.06)
                assert answered[-1] == "deepseek", answered
        finally:
            one.stop()
            two.stop()


def test_workers_share_through_redis_and_say_so(tmp_path, redis_server):
    folder = chains_folder(tmp_path, CHAINS, PROVIDERS)
    with Simulator(script()) as sim:
        served = Served(sim, folder, "--workers", "2", env={"TORQ_REDIS_URL": redis_server.url})
        try:
            sim.outage("deepseek")
            for _ in range(2):
                _ask(served, "What is 2+2?")
            # whichever worker answers now, deepseek is skipped: the breaker is the deployment's
            reasons = {_ask(served, "hi").headers["x-torq-fallback-reason"] for _ in range(10)}
            assert reasons == {"provider_error:circuit_open"}
        finally:
            served.stop()
        alone = Served(sim, folder)
        try:
            ready = httpx.get(alone.url + "/readyz").json()
            assert ready["health"].startswith("local: each worker keeps its own")
            assert ready["redis"] is None
        finally:
            alone.stop()


def test_every_worker_reloads_an_edited_chain(tmp_path):
    """A chain file edited under a running deployment: each of the two workers picks the
    new alias up (each watches the folder), with no restart."""
    folder = chains_folder(tmp_path, CHAINS, PROVIDERS)
    with Simulator(script()) as sim:
        served = Served(sim, folder, "--workers", "2")
        try:
            # One kept-alive connection per worker: which worker accepts a new connection is
            # the kernel's choice, so connections are opened until both have one.
            pinned: dict[int, httpx.Client] = {}
            for _ in range(200):
                client = httpx.Client(base_url=served.url, timeout=10)
                worker = client.get("/readyz").json()["worker"]
                if worker in pinned:
                    client.close()
                else:
                    pinned[worker] = client
                if len(pinned) == 2:
                    break
            assert len(pinned) == 2, "every connection went to one worker"
            before = {w: c.get("/readyz").json()["models"] for w, c in pinned.items()}
            (folder / "direct.yaml").write_text(
                "aliases: [team-default]\nsteps: [deepseek, openai]\n"
            )
            loaded = dict(before)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(loaded[w] == before[w] for w in loaded):
                for worker, client in pinned.items():
                    ready = client.get("/readyz").json()
                    assert ready["worker"] == worker  # the same connection, the same worker
                    loaded[worker] = ready["models"]
                time.sleep(0.05)
            for client in pinned.values():
                client.close()
            assert all(loaded[w] == before[w] + 1 for w in loaded), (before, loaded)
            reply = httpx.post(served.url + "/v1/chat/completions", timeout=30, json={
                "model": "team-default", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
            assert reply.status_code == 200 and reply.headers["x-torq-chain"] == "direct"
        finally:
            served.stop()


def test_readyz_is_503_while_redis_is_down(tmp_path, redis_server):
    folder = chains_folder(tmp_path, CHAINS, PROVIDERS)
    with Simulator(script()) as sim:
        served = Served(sim, folder, env={"TORQ_REDIS_URL": redis_server.url})
        try:
            assert httpx.get(served.url + "/readyz").status_code == 200
            redis_server.stop()
            reply = httpx.get(served.url + "/readyz")
            assert reply.status_code == 503 and reply.json()["redis"] == "unreachable"
            assert _ask(served, "What is 2+2?").status_code == 200  # requests go on, locally
        finally:
            served.stop()
