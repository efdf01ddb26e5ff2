"""What watching a chains directory costs while nothing changes, and how long start-up and a
reload take, with many other files in the directory.

Run: .venv/bin/python benchmarks/reload_idle.py [--files N] [--polls N]

Prints the time of one idle poll (one stat of the directory and of each chain file), the
CPU share of an idle watcher at the default interval, and start-up and reload times.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from engine import LLMManager
from engine.chain.reload import ChainReloader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000, help="other files in the directory")
    parser.add_argument("--polls", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for mode in ("default", "direct", "research", "code_generation"):
            (folder / f"{mode}.yaml").write_text("steps: [deepseek, openai, claude]\n")
        for number in range(args.files):
            (folder / f"notes{number}.txt").write_text("")
        started = time.perf_counter()
        manager = LLMManager(config={"chains_dir": str(folder)})
        startup = time.perf_counter() - started
        reloader = ChainReloader(manager.chainset, interval=0.5)
        cpu = time.process_time()
        wall = time.perf_counter()
        for step in range(args.polls):
            reloader.poll(now=float(step))
        per_poll = (time.perf_counter() - wall) / args.polls
        cpu_per_poll = (time.process_time() - cpu) / args.polls
        started = time.perf_counter()
        manager.reload()
        reload_s = time.perf_counter() - started
        manager.close()
    print(f"{args.files} other files, 4 chain files")
    print(f"start-up (LLMManager()):      {startup * 1000:8.1f} ms")
    print(f"reload():                     {reload_s * 1000:8.1f} ms")
    print(
        f"idle poll:                    {per_poll * 1e6:8.1f} us ({cpu_per_poll * 1e6:.1f} us CPU)"
    )
    print(f"idle watcher at 0.5 s:        {cpu_per_poll / 0.5 * 100:8.4f} % of a core")


if __name__ == "__main__":
    main()
