"""Configuration that would put a bad request on the wire is refused where it is written: a
header the transport owns (sent twice, in the shape of request smuggling), a header name
that is not a token, a base URL with a query string or a fragment (the endpoint's path
would land in the middle of it)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import run_cli

from engine import ChainConfigError, LLMManager
from engine.providers.resolved import resolve
from engine.providers.settings import BUILTIN_SETTINGS, check_providers_file

BAD = {
    "Host: other": "header 'Host' is written by the transport",
    "Content-Length: '5'": "header 'Content-Length' is written by the transport",
    "Transfer-Encoding: chunked": "header 'Transfer-Encoding' is written by the transport",
    "connection: close": "header 'connection' is written by the transport",
    "'X Custom': a": "header name 'X Custom' is not a token (letters, digits and !#$%&'*+-.^_`|~: no space, no colon) (did you mean 'X-Custom'?)",
    "'Authorization:': b": "(did you mean 'Authorization'?)",
}


@pytest.mark.parametrize("line", list(BAD))
def test_a_header_that_cannot_be_sent_is_refused_with_file_and_line(tmp_path, line):
    path = tmp_path / "providers.yaml"
    path.write_text(f"providers:\n  openai:\n    headers:\n      {line}\n", encoding="utf-8")
    settings, problems = check_providers_file(path)
    assert settings is None
    assert [str(p).split(": ", 1)[0] for p in problems] == [f"{path}:4:7"]
    assert BAD[line] in str(problems[0])


@pytest.mark.parametrize(
    "url", ["https://api.example.com/v1?x=1", "https://api.example.com/v1#frag"]
)
def test_a_base_url_with_a_query_or_a_fragment_is_refused(tmp_path, url):
    path = tmp_path / "providers.yaml"
    path.write_text(f"providers:\n  openai:\n    base_url: {url}\n", encoding="utf-8")
    _, problems = check_providers_file(path)
    assert [f"{p.source}:{p.line}" for p in problems] == [f"{path}:3"]
    assert "a base URL cannot have a" in problems[0].message


def test_the_manager_refuses_to_start_on_such_a_file(tmp_path):
    (tmp_path / "default.yaml").write_text("steps: [openai]\n", encoding="utf-8")
    (tmp_path / "providers.yaml").write_text(
        "providers:\n  openai:\n    headers: {Host: evil.example}\n", encoding="utf-8"
    )
    with pytest.raises(ChainConfigError, match=r"providers\.yaml:3:15: .*'Host' is written"):
        LLMManager({"chains_dir": str(tmp_path)})
    result = run_cli("validate", str(tmp_path))
    assert (
        result.returncode == 1
        and "'Host' is written by the transport" in result.stdout + result.stderr
    )


def test_a_base_url_from_the_environment_with_a_query_makes_the_provider_unusable():
    resolved = resolve(BUILTIN_SETTINGS["openai"], {
        "OPENAI_API_KEY": "sk-sendable-0123456789", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1?x=1",
    })  # fmt: skip
    assert resolved.unusable == (
        "OPENAI_BASE_URL: a base URL cannot have a query string (?...): the endpoint's path "
        "is appended to it"
    )


def test_settings_made_in_code_are_checked_when_resolved():
    settings = dataclasses.replace(BUILTIN_SETTINGS["openai"], headers={"Content-Length": "5"})
    with pytest.raises(ValueError, match="provider 'openai': header 'Content-Length' is written"):
        resolve(settings, {})
