"""The same benchmark on two versions of xrobust, alternating, in one session.

Runs ``bench_attacks.py`` (this checkout's copy, so both versions get the same benchmark)
once per round under each source tree, the order flipping every round, and prints each
run's table. Every row of ``--only versus`` is already a ratio against torchattacks timed
side by side, so machine drift cancels within a row; alternating the versions cancels
it between them. Run by hand, e.g. to check that a change kept the PyTorch path's speed:

    git worktree add --detach /tmp/xr-before <commit>
    .venv/bin/python benchmarks/bench_before_after.py --before /tmp/xr-before --rounds 2 \\
        -- --only versus --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="source tree of the old version")
    ap.add_argument("--after", default=str(HERE.parent), help="source tree of the new version")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="arguments for bench_attacks.py")
    a = ap.parse_args()
    extra = [x for x in a.args if x != "--"]
    trees = {"before": Path(a.before).resolve(), "after": Path(a.after).resolve()}
    for name, tree in trees.items():
        if not (tree / "xrobust" / "__init__.py").is_file():
            sys.exit(f"--{name} {tree}: no xrobust package there")
    for r in range(a.rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for name in order:
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            head = subprocess.run(
                ["git", "-C", str(trees[name]), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, check=False,
            ).stdout.strip()  # fmt: skip
            print(f"\n## round {r + 1}, {name} ({trees[name]}, {head})", flush=True)
            subprocess.run(
                [sys.executable, str(HERE / "bench_attacks.py"), *extra], env=env, check=True
            )


if __name__ == "__main__":
    main()
