"""Run the README as a reader does: one shell session and one Python session, side by side.

A reader keeps one terminal open (``source .venv/bin/activate``, ``export ...`` and ``cd``
carry over from one command to the next) and pastes the Python blocks into one ``python``
session (names defined in one block are used by the next). :class:`ShellSession` and
:class:`PythonSession` are those two, driven line by line and block by block, each step
with a time limit, its own output and its exit status or traceback.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_MARK = "__XROBUST_README_STEP__"


@dataclass
class Step:
    """What one README line (or Python block) did."""

    code: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.stdout + self.stderr


class _Lines:
    """Lines of a pipe, read by a thread, handed out with a deadline."""

    def __init__(self, pipe) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe) -> None:
        for line in iter(pipe.readline, ""):
            self._q.put(line)
        self._q.put(None)

    def until(self, mark: str, timeout: float) -> tuple[list[str], str]:
        """Lines before the first one starting with ``mark``, and that line's rest."""
        seen: list[str] = []
        while True:
            try:
                line = self._q.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no answer within {timeout:.0f} s") from None
            if line is None:
                raise EOFError("the session ended")
            if line.startswith(mark):
                return seen, line[len(mark) :].strip()
            seen.append(line)


class _Session:
    """A long-lived process fed on stdin, whose stdout ends each answer with a mark line."""

    def _start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self._out = _Lines(self._proc.stdout)

    def _ask(self, text: str, timeout: float) -> tuple[list[str], str]:
        """Send ``text``; the lines printed before the mark, and the mark line's rest (the
        process is killed if no mark comes within ``timeout``)."""
        self._proc.stdin.write(text)
        self._proc.stdin.flush()
        try:
            return self._out.until(_MARK, timeout)
        except TimeoutError:
            self.close()
            raise

    def close(self) -> None:
        raise NotImplementedError


class ShellSession(_Session):
    """One ``bash`` process; each line runs in it (not in a subshell), output to files."""

    def __init__(self, cwd: Path, env: dict[str, str], logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self._n = 0
        self._start(["bash", "--noprofile", "--norc"], cwd, env)

    def run(self, line: str, timeout: float) -> Step:
        self._n += 1
        out, err = self.logs / f"{self._n:03d}.out", self.logs / f"{self._n:03d}.err"
        script = f'{{ {line}\n}} >"{out}" 2>"{err}" </dev/null\necho "{_MARK} $?"\n'
        t0 = time.perf_counter()
        _, rc = self._ask(script, timeout)
        return Step(line, int(rc), out.read_text(), err.read_text(), time.perf_counter() - t0)

    def environment(self) -> dict[str, str]:
        """The session's exported variables now (after ``source``/``export`` lines)."""
        step = self.run("python -c 'import json, os; print(json.dumps(dict(os.environ)))'", 60)
        if step.returncode:
            raise RuntimeError(f"no `python` in the README's shell: {step.stderr[-500:]}")
        return json.loads(step.stdout)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)


_DRIVER = f"""
import io, json, sys, time, traceback
ns = {{"__name__": "__main__"}}
for request in sys.stdin:
    code = json.loads(request)
    t0 = time.perf_counter()
    try:
        exec(compile(code, "<README block>", "exec"), ns)
        failed = ""
    except BaseException:
        failed = traceback.format_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    print("{_MARK}", json.dumps({{"failed": failed, "seconds": time.perf_counter() - t0}}), flush=True)
"""


class PythonSession(_Session):
    """One ``python`` process in which every README Python block runs, in one namespace."""

    def __init__(self, python: str, cwd: Path, env: dict[str, str]) -> None:
        self._start([python, "-u", "-c", _DRIVER], cwd, env)

    def run(self, code: str, timeout: float) -> Step:
        seen, result = self._ask(json.dumps(code) + "\n", timeout)
        info = json.loads(result)
        return Step(
            code, 1 if info["failed"] else 0, "".join(seen), info["failed"], info["seconds"]
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def venv_of(python: str) -> Path | None:
    """The virtual environment a Python runs in (with ``bin/activate``), if any."""
    prefix = Path(sys.prefix) if python == sys.executable else Path(python).parents[1]
    return (
        prefix
        if (prefix / "bin" / "activate").is_file() and sys.prefix != sys.base_prefix
        else None
    )


def without_distributed(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}


__all__ = ["PythonSession", "ShellSession", "Step", "venv_of", "without_distributed"]
