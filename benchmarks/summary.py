"""Print the headline figures of a benchmark run: each JSON's "summary", each other log's last line.

Usage: python benchmarks/summary.py RESULTS_DIR   (what run_all.sh wrote)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(averages: list[float] | None) -> str:
    return "/".join(f"{a:.1f}" for a in averages) if averages else "?"


def main() -> None:
    folder = Path(sys.argv[1])
    print(f"\n===== benchmark summary ({folder}) =====")
    if (folder / "machine.txt").exists():
        print((folder / "machine.txt").read_text().strip())
    reported = set()
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        if "summary" not in result:
            continue
        env = result.get("environment", {})
        print(f"\n{path.stem}  (torch {env.get('torch')}, {env.get('torch_threads')} threads, "
              f"load average {_load(env.get('load_average_start'))} -> {_load(env.get('load_average'))})")
        if env.get("load_average_start") and env["load_average_start"][0] > env.get("cpu_count", 1):
            print("  (the machine was busy with other work: these figures are slower than on an idle one)")
        for name, value in result["summary"].items():
            print(f"  {name:<60} {value:10.3f}")
        reported.add(path.stem)
    for path in sorted(folder.glob("*.log")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if path.stem not in reported and lines:
            print(f"\n{path.stem}\n  {lines[-1]}")
    failed = folder / "failed.txt"
    if failed.exists():
        print(f"\n{failed.read_text().strip()}")


if __name__ == "__main__":
    main()
