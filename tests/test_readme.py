"""The README's Python snippets for attacks and explanations run as written."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(heading: str) -> str:
    text = README.read_text()
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"no python block under '### {heading}'"
    return blocks[0]


def test_attack_and_explain_snippets_run(digits28, digits_cnn, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ns = {"model": digits_cnn, "x": digits28["x_test"][:16], "y": digits28["y_test"][:16]}
    exec(compile(_python_block("Attack"), "README:Attack", "exec"), ns)
    res = ns["res"]
    assert 0.0 <= res.robust_accuracy <= res.clean_accuracy <= 1.0
    exec(compile(_python_block("Explain"), "README:Explain", "exec"), ns)
    assert ns["e"].attributions.shape == ns["x"].shape
    assert (tmp_path / "ig.png").stat().st_size > 0
