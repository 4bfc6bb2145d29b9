"""Report folders are never mixed or clobbered: the set of files is replaced as a whole
(a crash, even ``kill -9``, leaves the old set or the new one), a second audit into the
same folder is refused while one runs, and no command writes through a link, onto a
device, or over its own input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xrobust.audit.render import FILENAMES, write_report
from xrobust.audit.report import AuditReport, CheckResult
from xrobust.cli import main


def _report(title: str) -> AuditReport:
    return AuditReport(title=title, requirements=[CheckResult("min_clean_accuracy", "pass", "ok")])


def _set(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_the_set_is_replaced_as_a_whole(tmp_path) -> None:
    out = tmp_path / "rep"
    write_report(_report("first"), out)
    old = _set(out)
    assert set(old) == set(FILENAMES.values()) and all("first" in t for t in old.values())
    write_report(_report("second"), out)
    new = _set(out)
    assert set(new) == set(old) and all("second" in t and "first" not in t for t in new.values())
    # nothing left beside the folder but its lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_an_error_while_writing_keeps_the_old_set(tmp_path, monkeypatch) -> None:
    out = tmp_path / "rep"
    write_report(_report("first"), out)
    old = _set(out)
    import xrobust._io as io_mod

    real = io_mod.os.fsync
    calls = {"n": 0}

    def failing(fd):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(fd)

    monkeypatch.setattr(io_mod.os, "fsync", failing)
    with pytest.raises(OSError, match="No space"):
        write_report(_report("second"), out)
    assert _set(out) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_kill_9_mid_write_leaves_the_old_set_and_the_next_run_cleans_up(tmp_path) -> None:
    out = tmp_path / "rep"
    write_report(_report("first"), out)
    old = _set(out)
    script = textwrap.dedent(
        f"""
        import os, signal
        import xrobust._io as io_mod
        from xrobust.audit.render import write_report
        from xrobust.audit.report import AuditReport
        n = [0]
        real = os.fsync
        def die(fd):
            n[0] += 1
            if n[0] == 2:  # after report.html is written, before the rest
                os.kill(os.getpid(), signal.SIGKILL)
            return real(fd)
        io_mod.os.fsync = die
        write_report(AuditReport(title="second"), {str(out)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert _set(out) == old  # the old set, complete, with no file of the new one
    assert any(p.name.startswith(".rep.new-") for p in tmp_path.iterdir())
    write_report(_report("third"), out)  # the next run removes the leftovers
    assert all("third" in t for t in _set(out).values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_second_audit_into_the_folder_is_refused_while_one_runs(tmp_path, capsys) -> None:
    out = tmp_path / "rep"
    script = textwrap.dedent(
        f"""
        import sys, time
        from xrobust.audit.render import report_lock
        with report_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(
            ["audit", "--model", str(tmp_path / "no-run"), "--out", str(out), "--no-progress"]
        )
        err = capsys.readouterr().err
        assert rc == 2 and "being written by another audit" in err and f"pid {holder.pid}" in err
        assert "Traceback" not in err
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()  # the refused run wrote nothing


def test_report_folder_with_other_files_is_refused(tmp_path) -> None:
    from xrobust.errors import ConfigError

    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        ConfigError, match=r"holds entries that are not part of a report \(notes.txt\)"
    ):
        write_report(_report("x"), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_out_through_a_symlink_is_refused(tmp_path, capsys) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    rc = main(["audit", "--model", str(tmp_path / "no-run"), "--out", str(link), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "symbolic link" in err and str(link) in err
    target = tmp_path / "t.md"
    target.write_text("keep")
    flink = tmp_path / "f.md"
    flink.symlink_to(target)
    rep = tmp_path / "r"
    write_report(_report("x"), rep)
    assert main(["report", str(rep), "--format", "md", "--out", str(flink)]) == 2
    assert "symbolic link" in capsys.readouterr().err and target.read_text() == "keep"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_out_naming_a_device_is_refused(tmp_path, capsys) -> None:
    rep = tmp_path / "r"
    write_report(_report("x"), rep)
    rc = main(["report", str(rep), "--format", "md", "--out", "/dev/null"])
    err = capsys.readouterr().err
    assert rc == 2 and "not a regular file" in err and "/dev/null" in err
    assert os.path.exists("/dev/null") and not Path("/dev/null").is_file()


def test_a_command_never_overwrites_its_own_input(tmp_path, capsys) -> None:
    import numpy as np

    data = tmp_path / "v.npz"
    np.savez(data, x=np.zeros((2, 4), np.float32), y=np.zeros(2, np.int64))
    before = data.read_bytes()
    rc = main(["attack", "--model", str(tmp_path / "no-run"), "--data", str(data),
               "--out", str(data), "--eps", "0.1", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "is the input" in err and "v.npz" in err
    assert data.read_bytes() == before
    rep = tmp_path / "r"
    paths = write_report(_report("x"), rep)
    assert main(["report", str(rep), "--format", "json", "--out", str(paths["json"])]) == 2
    assert "is the input" in capsys.readouterr().err


def test_hidden_entries_and_folders_named_like_reports_are_never_deleted(tmp_path) -> None:
    from xrobust.errors import ConfigError

    out = tmp_path / "out"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref")
    with pytest.raises(ConfigError, match=r"\.git"):
        write_report(_report("x"), out, formats=("md",))
    assert (out / ".git" / "HEAD").read_text() == "ref"
    other = tmp_path / "other"
    (other / "report.json").mkdir(parents=True)
    (other / "report.json" / "data.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"report\.json"):
        write_report(_report("x"), other)
    assert (other / "report.json" / "data.txt").read_text() == "keep"


def test_out_dot_and_foreign_files_are_refused_before_any_work(
    tmp_path, capsys, monkeypatch
) -> None:
    """--out . (the current directory) and a folder holding other files are refused at once,
    not after the audit ran; nothing is left behind."""
    import xrobust.audit as audit_mod

    def no_audit(*a, **k):
        raise AssertionError("the audit ran before the refusal")

    monkeypatch.setattr(audit_mod, "audit", no_audit)
    monkeypatch.chdir(tmp_path)
    rc = main(["audit", "--demo", "--out", ".", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "current directory" in err
    f = tmp_path / "f"
    f.mkdir()
    (f / "notes.txt").write_text("hi")
    rc = main(["audit", "--demo", "--out", str(f), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "notes.txt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
