"""The engine in process, this tree against an earlier revision, alternating in one run.

Run: .venv/bin/python benchmarks/compare_revisions.py REV [--rounds 4] [--requests 5000]
                                                         [--instructions]

REV (a commit, tag or branch) is checked out into a temporary git worktree; each round runs
the same rows in a fresh interpreter for REV, then for this tree, and the least time of
each row over the rounds is kept (these machines are shared: the least is the least
disturbed). Rows, with instant in-process providers: the executor's success and 3-hop
fallback, and ``LLMManager.generate_response``'s (breakers on for the success row, off for
the fallback so that every attempt is made).

``--instructions`` counts instead of timing: each row runs under valgrind (``cachegrind``,
no cache simulation) 200 and then 1,200 times, and the difference over 1,000 is its CPU
instructions per request. Unlike a time, the count is the same from run to run on a shared
machine, so small changes show; it does not see cache misses or branch mispredictions, so
the timed rows stay the measure and the counts explain them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("executor, success", "executor, 3-hop fallback", "LLMManager, success",
          "LLMManager, 3-hop fallback")  # fmt: skip

ROWS = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from engine import FallbackExecutor, GenerationMeta, LLMManager, ProviderError

class Instant:
    def __init__(self, fail):
        self.fail = fail

    def generate_response(self, *, prompt, timeout):
        if self.fail:
            raise ProviderError("unavailable", code="503")
        return "answer"

ok = {"deepseek": Instant(False), "openai": Instant(False)}
hops = {n: Instant(True) for n in ("deepseek", "openai", "claude")}
hops["ollama"] = Instant(False)
m_ok = LLMManager(config={"providers": ok})
m_hops = LLMManager(config={"providers": hops, "health": {"backend": "off"}})
chain = m_ok.chain_for("direct")
ex_ok, ex_hops = FallbackExecutor(ok.get), FallbackExecutor(hops.get)
rows = [lambda: ex_ok.execute(chain, "p", GenerationMeta(), 60),
        lambda: ex_hops.execute(chain, "p", GenerationMeta(), 60),
        lambda: m_ok.generate_response("p"),
        lambda: m_hops.generate_response("p")]
n = int(sys.argv[2])
if len(sys.argv) > 3:  # one row, n times, untimed (counted by valgrind from outside)
    for _ in range(n):
        rows[int(sys.argv[3])]()
    raise SystemExit(0)
out = []
for fn in rows:
    for _ in range(500):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    out.append(best)
print(" ".join(f"{v:.3f}" for v in out))
"""


def run(root: Path, requests: int) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", ROWS, str(root), str(requests)],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), check=True,
    )  # fmt: skip
    return [float(v) for v in done.stdout.split()]


def instructions(root: Path, row: int, requests: int) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-c", ROWS, str(root), str(requests), str(row)],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), check=True,
    )  # fmt: skip
    refs = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if refs is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(refs.group(1).replace(",", ""))


def count_rows(old: Path, rev: str) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    print(f"{'CPU instructions per request':44} {rev[:12]:>12} {'this tree':>10} {'ratio':>6}")
    for index, label in enumerate(LABELS):
        counts = []
        for root in (old, ROOT):
            low, high = instructions(root, index, 200), instructions(root, index, 1200)
            counts.append((high - low) / 1000)
        print(f"{label:44} {counts[0]:12,.0f} {counts[1]:10,.0f} {counts[1] / counts[0]:6.2f}",
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--instructions", action="store_true", help="count, under valgrind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old),
                        args.rev], check=True)  # fmt: skip
        try:
            if args.instructions:
                count_rows(old, args.rev)
                return
            before: list[list[float]] = []
            after: list[list[float]] = []
            for _ in range(args.rounds):
                before.append(run(old, args.requests))
                after.append(run(ROOT, args.requests))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=True)  # fmt: skip
    print(f"{'µs per request (least of ' + str(args.rounds) + ' rounds)':44} {args.rev[:12]:>12}"
          f" {'this tree':>10} {'ratio':>6}")  # fmt: skip
    for index, label in enumerate(LABELS):
        old_us = min(r[index] for r in before)
        new_us = min(r[index] for r in after)
        print(f"{label:44} {old_us:12.1f} {new_us:10.1f} {new_us / old_us:6.2f}")


if __name__ == "__main__":
    main()
