"""``run --messages FILE``: only a regular file, capped in size and depth, read as strict
JSON; anything else is bad usage, exit 2 with one clear line (no traceback, no hang)."""

from __future__ import annotations

import os

import pytest
from helpers import run_cli


def _cases(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    obj = tmp_path / "object.json"
    obj.write_text('{"role": "user", "content": "hi"}')
    big = tmp_path / "big.json"
    with open(big, "wb") as handle:
        handle.write(b'[{"role": "user", "content": "')
        handle.write(b"x" * (17 * 1024 * 1024))
        handle.write(b'"}]')
    nan = tmp_path / "nan.json"
    nan.write_text('[{"role": "user", "content": "hi", "x": NaN}]')
    return {
        "deep": (deep, "nested"),
        "fifo": (fifo, "not a regular file"),
        "dev-zero": ("/dev/zero", "not a regular file"),
        "object": (obj, "expected a JSON list of messages, got dict"),
        "too-big": (big, "larger than"),
        "nan": (nan, "NaN is not JSON"),
        "missing": (tmp_path / "nope.json", "No such file"),
    }


@pytest.mark.parametrize(
    "case", ["deep", "fifo", "dev-zero", "object", "too-big", "nan", "missing"]
)
def test_a_bad_messages_file_is_bad_usage(tmp_path, case):
    path, says = _cases(tmp_path)[case]
    result = run_cli("run", "--messages", str(path), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "--messages" in lines[0]
