"""``xrobust app``: start the Streamlit dashboard (listens on 127.0.0.1 unless --host says
otherwise).

The dashboard ships inside the package (``xrobust/apps/dashboard``); it needs the ``app``
extra: ``pip install 'xrobust[app]'``. ``--model`` and ``--data`` preselect the sidebar's
model and data; they reach the app through the environment variables ``XROBUST_APP_MODEL``
and ``XROBUST_APP_DATA``.

First run, anywhere: the Streamlit process gets its settings on its command line (never by a
file written into the user's home), so that it starts the same on a fresh machine, without
a terminal or with standard input closed: ``server.headless`` (no e-mail prompt, no
"agent skills" advert, Streamlit never launches a browser), ``server.showEmailPrompt false``,
``browser.gatherUsageStats false`` (no telemetry and no notice about it),
``client.toolbarMode viewer`` (no Deploy button or developer menu). Unless ``--headless`` is
given, xrobust itself opens the page in a browser once the server answers, and only where
there is a display (``DISPLAY`` / ``WAYLAND_DISPLAY`` on Linux). The dashboard's favicon is an
emoji (a ``data:`` URL); Streamlit's fonts and icon font ship with Streamlit: the page makes
no request off the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import time

from xrobust.errors import ConfigError

#: environment variables the dashboard reads
ENV_MODEL = "XROBUST_APP_MODEL"
ENV_DATA = "XROBUST_APP_DATA"
ENV_MAX_UPLOAD_MB = "XROBUST_APP_MAX_UPLOAD_MB"
ENV_AUDIT_CONFIG = "XROBUST_APP_AUDIT_CONFIG"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="start the interactive dashboard (Streamlit) in the browser",
        description=(
            "Start the xrobust dashboard: a model's clean accuracy, calibration and robustness, "
            "the inputs an attack flips with their explanations, black-box behaviour, "
            "explanation quality and a side-by-side comparison of two models. Needs "
            "`pip install 'xrobust[app]'`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8501, help="port to listen on")
    p.add_argument(
        "--headless", action="store_true", help="do not open a browser window (servers, CI)"
    )
    p.add_argument(
        "--model",
        metavar="SOURCE",
        help="preselected model: 'demo' (digits), 'demo:digits_robust', 'demo:breast_cancer', "
        "a run folder written by `xrobust train`, an .onnx or .tflite file, or an endpoint "
        "URL (http(s):// or sagemaker://)",
    )
    p.add_argument(
        "--data",
        metavar="NAME_OR_PATH",
        help="preselected data: a built-in name or an .npz / .csv file on this machine",
    )
    p.add_argument(
        "--audit-config",
        metavar="FILE.toml",
        help="configuration of the overview's full audit (default: the demo's, or AuditConfig())",
    )
    p.add_argument(
        "--max-upload-mb",
        type=int,
        default=50,
        metavar="MB",
        help="largest file the sidebar accepts, in MB (Streamlit's server.maxUploadSize and "
        "the upload widgets' limit)",
    )
    p.add_argument(
        "--print-command",
        action="store_true",
        help="print the streamlit command and the environment it gets, and exit",
    )
    p.set_defaults(func=run)


def build_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and the extra environment for the dashboard."""
    from xrobust.apps.dashboard import APP_PATH

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    if not args.max_upload_mb >= 1:
        raise ConfigError(f"--max-upload-mb must be a whole number >= 1, got {args.max_upload_mb}")
    cmd = [
        sys.executable,
        "-m",
        # `streamlit run`, with the pages' imports and the preset demo's overview warmed
        # in the background while the server starts
        "xrobust.apps.dashboard.serve",
        "run",
        str(APP_PATH),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        # Streamlit never prompts, advertises or opens a browser; xrobust opens it (run())
        "--server.headless",
        "true",
        "--server.showEmailPrompt",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        # one limit: Streamlit's (the server and the widgets' "Limit N MB per file") is the
        # app's own (its check of files given by path)
        "--server.maxUploadSize",
        str(args.max_upload_mb),
    ]
    env = {ENV_MAX_UPLOAD_MB: str(args.max_upload_mb)}
    if args.model:  # a folder or file as an absolute path: the server may run elsewhere
        env[ENV_MODEL] = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    if args.data:
        env[ENV_DATA] = args.data
    if args.audit_config:
        env[ENV_AUDIT_CONFIG] = os.path.abspath(args.audit_config)
    return cmd, env


def _check_model(model: str | None) -> None:
    """Refuse a --model the sidebar cannot preselect, before the server starts."""
    if not model or model == "demo" or model.startswith(("demo:", "http://", "https://")):
        return
    if model.startswith("sagemaker://"):
        return
    for suffix in (".onnx", ".tflite"):
        if model.lower().endswith(suffix):
            if not os.path.isfile(model):
                raise ConfigError(f"--model {model!r}: no such {suffix} file")
            return
    if not os.path.isdir(model):
        raise ConfigError(
            f"--model {model!r}: no such run folder; give 'demo', 'demo:NAME', a folder "
            "written by `xrobust train --out DIR`, an .onnx or .tflite file or an endpoint URL "
            "(http(s):// or sagemaker://)"
        )


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError(
            "the dashboard needs Streamlit, which is not installed: pip install 'xrobust[app]'"
        )
    _check_model(args.model)
    if args.audit_config:
        from xrobust.audit import load_config

        load_config(args.audit_config)  # a bad file fails here, with its message
    cmd, env = build_command(args)
    if args.print_command:
        for k, v in env.items():
            print(f"{k}={v}")
        print(" ".join(cmd))
        return 0
    full_env = {**os.environ, **env}
    url = page_url(args.host, args.port)
    where = " (listening on all interfaces)" if args.host in _WILDCARD else ""
    print(
        f"xrobust app: the dashboard is starting on {url}{where}; press Ctrl+C to stop it",
        file=sys.stderr,
    )
    if not args.headless and has_display():
        _spawn_browser_opener(url)
    if os.name == "posix":
        # become the Streamlit server: signals (Ctrl-C, SIGTERM) reach it directly
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, cmd, full_env)
    return subprocess.call(cmd, env=full_env)  # pragma: no cover - non-POSIX


_WILDCARD = ("0.0.0.0", "::", "")


def page_url(host: str, port: int) -> str:
    """The address a browser on this machine opens (a wildcard host means this machine)."""
    if host in _WILDCARD:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def has_display(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser window can be shown: always on macOS and Windows; on Linux and
    the BSDs only with ``DISPLAY`` or ``WAYLAND_DISPLAY`` (Streamlit's own test)."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def _spawn_browser_opener(url: str) -> None:
    """A detached helper that opens ``url`` once the server's health check answers (the
    server process is this one after ``execve``, so the helper is a separate process)."""
    code = f"from xrobust.cli.app import open_when_ready; open_when_ready({url!r})"
    with contextlib.suppress(OSError):  # no browser then; the URL is printed
        subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def open_when_ready(url: str, timeout: float = 120.0) -> bool:
    """Wait for ``url``'s ``/_stcore/health`` to answer, then open ``url`` in a browser."""
    import urllib.request
    import webbrowser

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return webbrowser.open(url)
        except OSError:
            pass
        time.sleep(0.5)
    return False
