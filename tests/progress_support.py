"""Shared checks of the progress output (tests/test_cli_progress.py) and of the README's
quick-start demo audit (tests/test_readme.py), which runs with its output in a pipe, as
`xrobust audit --demo > log 2>&1` would."""

from __future__ import annotations

import itertools
import re

LINE = re.compile(
    r"^\[progress\] (?P<stage>.+) (?P<done>\d+)(/(?P<total>\d+) \(\d+%\))?, (?P<t>[\d.]+) s elapsed$"
)


def _progress_lines(text: str) -> list[re.Match[str]]:
    return [m for m in (LINE.match(line) for line in text.splitlines()) if m]


def assert_log_friendly(text: str, interval: float) -> list[re.Match[str]]:
    assert "\r" not in text, "carriage returns (a bar) in a log"
    lines = _progress_lines(text)
    stray = [ln for ln in text.splitlines() if ln.startswith("[progress]") and not LINE.match(ln)]
    assert not stray, stray
    times = [float(m["t"]) for m in lines]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= interval - 0.05 for g in gaps), gaps  # at most one line per interval
    return lines


def worst_case_no_higher_than_the_ensemble_alone(report_json) -> None:
    """The demo's Linf eps 0.1 worst case against the ensemble alone, rerun with the
    options and seed the report records on the same examples."""
    import json

    import torch

    from xrobust.attacks import get_attack
    from xrobust.audit.demo import demo_run
    from xrobust.data import as_tensors, load_dataset

    adv = json.loads(report_json.read_text())["sections"]["adversarial"]["data"]
    nd = adv["norms"]["linf"]
    k = nd["eps"].index(0.1)
    worst = nd["curves"]["worst"]["robust_accuracy"][k]
    model = demo_run("digits").model
    x, y = as_tensors(load_dataset("digits").test)
    idx = torch.tensor(adv["indices"])
    (seed,) = nd["seeds"]["ensemble"]  # the demo attacks its 128 examples in one chunk
    opts = {**nd["attack_options"]["ensemble"], "bounds": (0.0, 1.0), "seed": seed}
    alone = get_attack("ensemble", model, eps=0.1, **opts).run(x[idx], y[idx])
    assert (alone.config["steps"], alone.config["n_target_classes"]) == (100, 9)
    assert worst <= alone.robust_accuracy
