"""Start and stop the real model servers of ``examples/serve_*.py`` for the tests and the
benchmark: each runs under its own venv's Python (``.venv-kserve``, ``.venv-mlserver``, made
by ``scripts/setup.sh``; their pins fight the main venv's), on 127.0.0.1 with free ports,
ready within a bounded time or stopped with its log shown."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: server name -> (its venv, the module it needs, the example script that runs it)
SERVERS = {
    "kserve": (".venv-kserve", "kserve", "serve_kserve.py"),
    "mlserver": (".venv-mlserver", "mlserver", "serve_mlserver.py"),
}


def server_python(kind: str) -> tuple[Path | None, str]:
    """The Python that runs server ``kind`` (``$XROBUST_<KIND>_PYTHON`` or its venv's), or
    None with the reason it cannot (to skip with)."""
    venv, module, _ = SERVERS[kind]
    py = Path(os.environ.get(f"XROBUST_{kind.upper()}_PYTHON", ROOT / venv / "bin" / "python"))
    how = f"bash scripts/setup.sh makes {venv} from tests/servers/requirements-{kind}.txt"
    if not py.exists():
        return None, f"{kind} is not installed ({py} is missing; {how})"
    r = subprocess.run(
        [str(py), "-c", f"import {module}, onnxruntime"], capture_output=True, timeout=120
    )
    if r.returncode != 0:
        return None, f"{py} cannot import {module} and onnxruntime ({how})"
    return py, ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its base URL, model name, and the rows its model saw."""

    base_url: str
    name: str
    rows_log: Path
    log: Path

    @property
    def v2_url(self) -> str:
        return f"{self.base_url}/v2/models/{self.name}"

    @property
    def v1_url(self) -> str:
        return f"{self.base_url}/v1/models/{self.name}:predict"

    def rows(self) -> int:
        """Rows the served model answered so far (written by the server, one line each)."""
        if not self.rows_log.exists():
            return 0
        return sum(int(line) for line in self.rows_log.read_text().split())

    def reset(self) -> None:
        self.rows_log.unlink(missing_ok=True)


@contextlib.contextmanager
def serve(
    kind: str, python: Path, model: Path, folder: Path, *, name: str = "digits",
    ready_within: float = 90.0,
) -> Iterator[Server]:  # fmt: skip
    """Run ``examples/serve_<kind>.py`` on ``model`` until the block ends."""
    port = free_port()
    script = ROOT / "examples" / SERVERS[kind][2]
    rows, log = folder / f"{kind}-rows.txt", folder / f"{kind}.log"
    args = [str(python), str(script), str(model), "--name", name, "--port", str(port)]
    args += ["--rows-log", str(rows)]
    if kind == "mlserver":
        args += ["--grpc-port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder)
    server = Server(f"http://127.0.0.1:{port}", name, rows, log)
    try:
        _wait_ready(proc, f"{server.v2_url}/ready", ready_within, log)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _wait_ready(proc: subprocess.Popen, url: str, within: float, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{_tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready within {within:g} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
