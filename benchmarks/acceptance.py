"""The overhead of checking an answer (accept rules), in process, per answer.

Run: .venv/bin/python benchmarks/acceptance.py [--requests N]

A 1 KB JSON answer against a 10-property schema; a tool call's arguments against its tool's
parameters; and the whole executor on an instant in-process provider with and without the
schema, alternating in one run, so that the difference is what the check adds to a request.
Prints microseconds (the median of 5 rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import measure

from engine import Completion, FallbackExecutor, GenerationMeta, ToolCall, load_chain
from engine.chain.accept import DEFAULT_ACCEPTANCE
from engine.core.acceptance import judge
from engine.core.machine import compile_chain
from engine.types.request import ChatRequest, Message, Tool

PROPERTIES = {f"field_{i}": {"type": "string" if i % 2 else "integer"} for i in range(10)}
SCHEMA = {
    "type": "object",
    "properties": PROPERTIES,
    "required": sorted(PROPERTIES),
    "additionalProperties": False,
}
RECORD = {name: ("x" * 190 if i % 2 else i) for i, name in enumerate(sorted(PROPERTIES))}
ANSWER = json.dumps(RECORD)


class Instant:
    """A provider that answers at once with the 1 KB JSON record."""

    def generate_response(self, *, prompt: str, timeout: float) -> Completion:
        return Completion(ANSWER, "instant")


def chain_with(folder: Path, name: str, accept: str) -> object:
    path = folder / f"{name}.yaml"
    path.write_text(f"defaults: {{accept: {accept}}}\nsteps: [instant]\n" if accept else
                    "steps: [instant]\n")  # fmt: skip
    return compile_chain(load_chain(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    n = args.requests
    print(f"answer: {len(ANSWER)} bytes of JSON; schema: {len(PROPERTIES)} properties")

    folder = Path(tempfile.mkdtemp())
    (folder / "record.json").write_text(json.dumps(SCHEMA))
    checked = chain_with(folder, "checked", "{schema_file: record.json}")
    plain = chain_with(folder, "plain", "")
    step = checked.chain.steps[0]
    request = ChatRequest.from_prompt("a record")
    answer = Completion(ANSWER, "instant")
    assert judge(answer, step.accept, request, {}) is None

    tool = Tool("save_record", "", SCHEMA)
    tool_request = ChatRequest((Message("user", "save it"),), tools=(tool,))
    tool_answer = Completion("", "instant", tool_calls=(ToolCall("c1", "save_record", ANSWER),))
    assert judge(tool_answer, DEFAULT_ACCEPTANCE, tool_request, {}) is None

    rows = {
        "judge, no rules (the default)": lambda: judge(answer, DEFAULT_ACCEPTANCE, request, {}),
        "judge, JSON + 10-property schema": lambda: judge(answer, step.accept, request, {}),
        "judge, tool call arguments": lambda: judge(
            tool_answer, DEFAULT_ACCEPTANCE, tool_request, {}
        ),
    }
    for label, fn in rows.items():
        print(f"  {label:<40} {measure(fn, n):7.2f} us")

    executor = FallbackExecutor({"instant": Instant()}.get)

    def run(compiled):
        def once() -> None:
            executor.execute(compiled, request, GenerationMeta(), 30)

        return once

    # Alternate, so that both rows see the same machine state.
    with_check, without = [], []
    for _ in range(5):
        with_check.append(measure(run(checked), n // 5, rounds=1))
        without.append(measure(run(plain), n // 5, rounds=1))
    a, b = statistics.median(with_check), statistics.median(without)
    print(f"  {'executor, no accept rules':<40} {b:7.2f} us")
    print(f"  {'executor, schema_file rule':<40} {a:7.2f} us  (+{a - b:.2f} us per answer)")


if __name__ == "__main__":
    main()
