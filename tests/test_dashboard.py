"""The live dashboard in a real browser (Debian's Chromium, driven by Playwright): a
``serve`` subprocess in front of the simulator, the page at ``/dashboard``. It loads with no
console error and no request beyond the gateway; a breaker opened by failures shows open,
then closed after recovery; edge counts move with traffic; a request's attempts open on
click; the page reconnects after a restart; markup in names and messages stays text."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from gateway_setup import chains_folder, script
from served import Served

from engine.simulator import Behaviour, Simulator

HOSTILE = '<img src=x onerror="window.hacked=1">'
CHAINS = {
    "direct": f"description: '<script>window.hacked=1</script>'\nsteps:\n"
    f"  - {{provider: deepseek, model: {json.dumps(HOSTILE)}}}\n  - claude\n",
    "default": "steps: [claude]\n",
}
PROVIDERS = """providers:
  deepseek:
    breaker: {failure_threshold: 3, cooldown: 30}
    health_check: {interval: 0.5}   # an open breaker is probed (no request spent on it)
  claude: {breaker: {enabled: false}, quota: {rpm: 600, tpm: 200000}}
"""


def _script():
    # a provider's error message with markup in it (it reaches the attempt history)
    return script({"MARKUP": {"deepseek": [Behaviour("error", status=500, message=HOSTILE)]}})


@pytest.fixture
def gateway(tmp_path):
    with Simulator(_script()) as sim:
        served = Served(sim, chains_folder(tmp_path, CHAINS, PROVIDERS))
        try:
            yield served, sim, tmp_path
        finally:
            served.stop()


def _ask(served, prompt="What is 2+2?"):
    body = {"model": "direct", "messages": [{"role": "user", "content": prompt}]}
    return httpx.post(served.url + "/v1/chat/completions", json=body, timeout=30)


def _open(chromium, served):
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(served.url) else elsewhere.append(r.url))
    page.goto(served.url + "/dashboard")
    page.wait_for_selector("#status[data-state=live]", timeout=10_000)
    return page, problems, elsewhere


def _breaker(page):
    return page.locator("section.chain", has=page.locator("h2", has_text="chain direct")).locator(
        "tr[data-step=deepseek] td[data-role=breaker]"
    )


def test_the_page_shows_breakers_edges_and_attempts_live(chromium, gateway):
    served, sim, tmp_path = gateway
    page, problems, elsewhere = _open(chromium, served)
    try:
        assert _breaker(page).text_content() == "closed"
        sim.outage("deepseek")  # requests and health checks alike are 503s
        for _ in range(3):  # three failures in a row: deepseek's breaker opens
            assert _ask(served).status_code == 200  # claude answers
        began = time.monotonic()
        page.wait_for_function(
            "() => [...document.querySelectorAll('td[data-role=breaker]')]"
            ".some(td => td.textContent === 'open')",
            timeout=2_000,
        )
        assert time.monotonic() - began < 2.0
        assert "failures in a row" in page.locator("tr[data-step=deepseek]").first.text_content()
        # the edges the requests took carry their counts
        page.wait_for_function(
            "() => [...document.querySelectorAll('svg g.edge')]"
            ".some(g => Number(g.dataset.minute || 0) >= 3)",
            timeout=2_000,
        )
        labels = page.locator("svg g.edge text").all_text_contents()
        assert any("/min" in label for label in labels)
        # recovery: the active health check finds deepseek answering; the next request goes
        # to it and closes the breaker
        sim.outage("deepseek", down=False)
        page.wait_for_function(
            "() => document.querySelector('tr[data-step=deepseek] td[data-role=breaker]')"
            ".textContent === 'half-open'",
            timeout=3_000,
        )
        assert _ask(served).headers["x-torq-provider"] == "deepseek"
        page.wait_for_function(
            "() => document.querySelector('tr[data-step=deepseek] td[data-role=breaker]')"
            ".textContent === 'closed'",
            timeout=2_000,
        )
        # claude's quota use, against its limits
        quota = page.locator("section.chain", has=page.locator("h2", has_text="chain direct"))
        used = quota.locator("tr[data-step=claude] td[data-role=quota]").text_content()
        assert used.startswith("3/600 req, ") and used.endswith("/200000 tok"), used
        # a request's whole attempt history opens on click
        page.locator("#tail tbody tr").nth(1).click()  # the last request of the outage
        details = page.locator("#details")
        assert details.is_visible()
        history = json.loads(details.text_content())
        assert [a["provider"] for a in history] == ["deepseek", "claude"]
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert problems == [] and elsewhere == []
    finally:
        page.close()


def test_markup_in_names_and_messages_stays_text(chromium, gateway):
    served, _, _ = gateway
    page, problems, elsewhere = _open(chromium, served)
    try:
        _ask(served, "MARKUP please")
        page.wait_for_selector("#tail tbody tr", timeout=2_000)
        page.locator("#tail tbody tr").first.click()
        assert json.dumps(HOSTILE)[1:-1] in page.locator("#details").text_content()  # as JSON
        direct = page.locator("section.chain", has=page.locator("h2", has_text="chain direct"))
        drawn = direct.locator("svg").text_content()
        assert HOSTILE in drawn and "<script>window.hacked=1</script>" in drawn
        assert page.evaluate("() => window.hacked") is None
        assert page.locator("img").count() == 0 and page.locator("#chains script").count() == 0
        assert problems == [] and elsewhere == []
    finally:
        page.close()


def test_the_page_reconnects_after_a_restart(chromium, gateway, tmp_path):
    served, sim, _ = gateway
    page, problems, _ = _open(chromium, served)
    try:
        first = page.locator("#scope").text_content()
        served.stop()
        page.wait_for_selector("#status[data-state=reconnecting]", timeout=5_000)
        again = Served(sim, chains_folder(tmp_path / "again", CHAINS, PROVIDERS), port=served.port)
        try:
            page.wait_for_selector("#status[data-state=live]", timeout=10_000)
            page.wait_for_function(
                "(before) => document.querySelector('#scope').textContent !== before",
                arg=first, timeout=5_000,
            )  # fmt: skip
            _ask(again)
            page.wait_for_selector("#tail tbody tr", timeout=3_000)
        finally:
            again.stop()
        # the browser logs the refused reconnects; nothing else may fail
        assert [
            p for p in problems if "ERR_CONNECTION_REFUSED" not in p and "EventSource" not in p
        ] == []
    finally:
        page.close()


def test_the_dashboard_is_loopback_only_without_keys_and_asks_for_a_key_with_them(tmp_path):
    from helpers import run_cli

    keys = tmp_path / "keys.yaml"
    made = run_cli("keys", "add", "ops", "--keys", str(keys)).stdout.split()[0]
    solo = run_cli("keys", "add", "solo", "--keys", str(keys), "--chains", "direct").stdout.split()[
        0
    ]
    with Simulator(_script()) as sim:
        served = Served(sim, chains_folder(tmp_path, CHAINS, PROVIDERS), "--keys", str(keys))
        try:
            asked = httpx.get(served.url + "/dashboard")
            assert asked.status_code == 401 and "asks for a key" in asked.text
            assert made not in asked.text
            assert httpx.get(served.url + "/dashboard/events").status_code == 401
            with_cookie = httpx.get(served.url + "/dashboard", cookies={"torq_key": made})
            assert with_cookie.status_code == 200 and "chain direct" in with_cookie.text
            wrong = httpx.get(served.url + "/dashboard", cookies={"torq_key": "tfk_nope"})
            assert wrong.status_code == 401
            some = httpx.get(served.url + "/dashboard", headers={"authorization": f"Bearer {solo}"})
            assert some.status_code == 403 and "key for every chain" in some.text
            assert solo not in some.text
        finally:
            served.stop()


def _pictures(url: str, within: float):
    """The event stream's pictures, for ``within`` seconds at most."""
    deadline = time.monotonic() + within
    with httpx.stream("GET", url + "/dashboard/events", timeout=within + 5) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))
            if time.monotonic() > deadline:
                return


def test_two_workers_show_as_one_deployment_through_redis(tmp_path, redis_server):
    with Simulator(_script()) as sim:
        served = Served(sim, chains_folder(tmp_path, CHAINS, PROVIDERS), "--workers", "2",
                        env={"TORQ_REDIS_URL": redis_server.url})  # fmt: skip
        try:
            for _ in range(20):  # a fresh connection each: the kernel spreads them over both
                assert _ask(served).status_code == 200
            seen = None
            for picture in _pictures(served.url, within=8):
                seen = picture
                if len(picture["scope"]["workers"]) == 2 and picture["requests"] == 20:
                    break
            assert seen is not None
            assert len(seen["scope"]["workers"]) == 2, seen["scope"]
            assert seen["requests"] == 20 and len(seen["tail"]) == 20
            assert seen["scope"]["traffic"] == "2 workers, through Redis"
            assert seen["scope"]["health"].startswith("shared through Redis")
        finally:
            served.stop()


def test_an_application_serves_its_own_managers_dashboard(tmp_path, monkeypatch):
    from engine import LLMManager
    from engine.gateway import start_dashboard

    with Simulator(_script()) as sim:
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        with LLMManager({"chains_dir": str(chains_folder(tmp_path, CHAINS, PROVIDERS))}) as llm:
            board = start_dashboard(llm, port=0)
            try:
                for _ in range(3):
                    assert llm.generate_response("What is 2+2?")[1].provider == "deepseek"
                url = board.url.removesuffix("/dashboard")
                assert "chain direct" in httpx.get(board.url).text
                picture = next(p for p in _pictures(url, within=5) if p["requests"] == 3)
                assert [r["provider"] for r in picture["tail"]] == ["deepseek"] * 3
                assert picture["scope"]["traffic"].startswith("this worker only")
            finally:
                board.stop()
    with pytest.raises(ValueError, match="loopback only"):
        start_dashboard(llm, host="0.0.0.0")


def test_the_dashboard_command_shows_a_deployment_from_redis(tmp_path, redis_server):
    import os
    import subprocess

    from helpers import PYTHON, ROOT, closed_port

    folder = chains_folder(tmp_path, CHAINS, PROVIDERS)
    with Simulator(_script()) as sim:
        served = Served(sim, folder, env={"TORQ_REDIS_URL": redis_server.url})
        port = closed_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORQ_")}
        env.update(sim.env(), TORQ_REDIS_URL=redis_server.url)
        viewer = subprocess.Popen(
            [PYTHON, "-m", "engine.cli", "dashboard", "--port", str(port), "--chains", str(folder)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/dashboard", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            for _ in range(4):
                assert _ask(served).status_code == 200
            picture = None
            for picture in _pictures(url, within=8):
                if picture["requests"] == 4:
                    break
            assert picture is not None and picture["requests"] == 4
            # the gateway's worker is the deployment; the viewer process is not one of it
            assert len(picture["scope"]["workers"]) == 1
            assert picture["scope"]["health"].startswith("shared through Redis")
        finally:
            viewer.terminate()
            out, err = viewer.communicate(timeout=20)
            served.stop()
        assert "torq-fallback dashboard on http://127.0.0.1:" in out, err


def test_closing_the_page_frees_its_stream(chromium, gateway):
    served, _, _ = gateway
    page, _, _ = _open(chromium, served)
    page.close()
    deadline = time.monotonic() + 5
    viewers = None
    seen = []
    while time.monotonic() < deadline:  # the server notices the closed stream within a tick
        pictures = _pictures(served.url, within=2)
        viewers = next(pictures)["scope"]["viewers"]
        pictures.close()  # this reader's stream ends here too
        seen.append(viewers)
        if viewers == 1:  # this reader alone
            break
        time.sleep(1.0)  # a closed stream is let go within a tick (0.5 s): so is this one
    assert viewers == 1, seen


def test_twenty_chains_and_a_hundred_providers_stay_usable(chromium, tmp_path):
    names = [f"p{i:03d}" for i in range(100)]
    providers = "providers:\n" + "".join(
        f"  {n}: {{kind: openai, base_url: http://127.0.0.1:9/v1, model: m}}\n" for n in names
    )
    chains = {f"mode{c:02d}": "steps: [" + ", ".join(names[c * 5 : c * 5 + 5]) + "]\n"
              for c in range(20)}  # fmt: skip
    chains["default"] = "steps: [p000]\n"
    with Simulator(_script()) as sim:
        served = Served(sim, chains_folder(tmp_path, chains, providers))
        try:
            page, problems, elsewhere = _open(chromium, served)
            try:
                assert page.locator("section.chain").count() == 21
                rows = page.locator("section.chain tbody tr")
                page.wait_for_function("() => document.querySelectorAll('section.chain tbody tr')"
                                       ".length === 101")  # fmt: skip
                assert rows.count() == 101
                assert page.locator("td[data-role=breaker]").all_text_contents() == ["closed"] * 101
                wide = page.evaluate("() => document.documentElement.scrollWidth")
                assert wide <= 1400, f"the page scrolls sideways ({wide} px)"
                assert problems == [] and elsewhere == []
            finally:
                page.close()
        finally:
            served.stop()


def test_closing_the_manager_stops_the_deployments_publisher(tmp_path, redis_server, monkeypatch):
    """Mounted without a lifespan, nothing but the manager's close ends the publisher."""
    import redis

    from engine import LLMManager
    from engine.gateway import DashboardApp

    monkeypatch.setenv("TORQ_REDIS_URL", redis_server.url)
    llm = LLMManager({"chains_dir": str(chains_folder(tmp_path, CHAINS, PROVIDERS))})
    shared = DashboardApp(llm).dashboard.shared
    assert shared is not None
    shared.start()
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    deadline = time.monotonic() + 5
    while not client.hexists(shared.key, shared.worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.hexists(shared.key, shared.worker)  # published
    llm.close()
    assert not any(t.name == "torq-dashboard" for t in threading.enumerate())
    assert not client.hexists(shared.key, shared.worker)  # and taken out
    client.close()
