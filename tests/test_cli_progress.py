"""Progress: the library reports ``progress(stage, done, total)``; the CLI renders it as a
tqdm bar on a terminal and as at most one plain line every few seconds in a log."""

from __future__ import annotations

import io

import pytest
from progress_support import assert_log_friendly

from xrobust.cli import _progress
from xrobust.cli._progress import ProgressRenderer


class FakeClock:
    def __init__(self, step: float) -> None:
        self.t = 100.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_log_lines_are_rate_limited_and_say_stage_count_and_time() -> None:
    out = io.StringIO()
    p = ProgressRenderer(out, interval=5.0, tty=False, clock=FakeClock(0.5))
    for k in range(100):  # 50 s of fake time, a call every 0.5 s
        p("adversarial linf", k + 1, 100)
    p.close()
    lines = assert_log_friendly(out.getvalue(), 5.0)
    assert len(lines) == 9  # one line per 5 s over 50 s (the first after 5 s), not 100
    first = lines[0]
    assert first["stage"] == "adversarial linf" and first["total"] == "100"
    assert first["done"] == "11" and float(first["t"]) == pytest.approx(5.0)
    assert float(lines[-1]["t"]) == pytest.approx(45.0)
    quick = io.StringIO()  # a run shorter than the interval writes nothing
    p = ProgressRenderer(quick, interval=5.0, tty=False, clock=FakeClock(0.5))
    for k in range(9):
        p("clean", k + 1, 9)
    assert quick.getvalue() == ""


def test_unknown_total_and_disabled() -> None:
    out = io.StringIO()
    p = ProgressRenderer(out, interval=0.0, tty=False, clock=FakeClock(1.0))
    p("attack", 256, -1)
    assert out.getvalue() == "[progress] attack 256, 0.0 s elapsed\n"
    off = io.StringIO()
    ProgressRenderer(off, enabled=False, tty=False)("attack", 1, 2)
    assert off.getvalue() == ""


def test_terminal_gets_a_tqdm_bar_without_bogus_rates() -> None:
    out = io.StringIO()
    with ProgressRenderer(out, tty=True) as p:
        p("adversarial:linf:pgd:0.1", 64, 128)
        p("adversarial:linf:pgd:0.2", 128, 128)
    text = out.getvalue()
    assert "adversarial" in text and "128/128" in text
    assert "it/s" not in text  # done is set, not counted: a rate would be meaningless


def test_cli_audit_in_a_log_writes_few_lines(tmp_path, capsys, monkeypatch) -> None:
    """`xrobust audit` with stderr redirected (capsys: not a TTY): every progress call is
    made 1 s apart on a fake clock, and the log still gets a line at most every 5 s."""
    import torch
    import torch.nn.functional as F

    from xrobust.cli import main
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import build_model, save_checkpoint

    ds = load_dataset("breast_cancer")
    torch.manual_seed(0)
    model = build_model("mlp", ds.spec)
    x, y = as_tensors(ds.train)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    save_checkpoint(model, tmp_path / "run", spec=ds.spec)
    clock = FakeClock(1.0)
    monkeypatch.setattr(_progress.time, "monotonic", clock)
    argv = ["audit", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "rep"), "--n", "32"]
    argv += ["--attacks", "fgsm,pgd", "--norms", "linf", "--steps", "3", "--skip", "explanations"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    lines = assert_log_friendly(err, _progress.DEFAULT_INTERVAL)
    calls = clock.t - 100.0
    assert len(lines) >= 2, err
    assert len(lines) <= calls / _progress.DEFAULT_INTERVAL + 1
