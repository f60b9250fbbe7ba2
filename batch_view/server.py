"""One server for people: the admin view on PORT, and `dagster dev` (the Dagster UI and daemon) on PORT + 1.

`batch-admin ui` prepares the Dagster instance and hands over to `python -m batch_view`, which runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import uvicorn

from batch_view.app import create_app
from batch_view.sources import Sources
from resources.settings import UI_FILE, VIEW_URL_VAR, Settings

STOP_TIMEOUT_S = 20
# In DAGSTER_HOME while this server runs: where its Dagster webserver answers, so that a CLI run is submitted
# to its warm code location (batch_cli/ui_runs.py reads it).


def dagster_command(workspace: Path, host: str, port: int) -> list[str]:
    """`dagster dev` from this environment on the given address."""
    dagster = Path(sys.executable).with_name("dagster")
    return [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def address(host: str, port: int) -> str:
    """How people open it: `localhost` for the loopback interface (a secure context, and a domain that a
    WebAuthn relying party can be), else the host given."""
    return f"http://{'localhost' if host in ('127.0.0.1', '::1', 'localhost') else host}:{port}"


def serve(host: str, port: int, workspace: Path, dagster: bool = True, dagster_url: str | None = None) -> None:
    """The view in this process, `dagster dev` beside it as a child ended with it (or the Dagster UI at
    dagster_url, started elsewhere)."""
    settings = Settings.from_env()
    # How this host's processes reach the webserver (a CLI run on this host submits its runs there).
    webserver = dagster_url or f"http://{'127.0.0.1' if host in ('0.0.0.0', 'localhost') else host}:{port + 1}"
    view_url, dagster_url = address(host, port), dagster_url or address(host, port + 1)
    # This process (links in the alerts of the requests filed here) and the Dagster processes (links of a
    # month's metadata) learn the view's address; a deployment's BATCH_ADMIN_ORIGIN comes first in both.
    os.environ[VIEW_URL_VAR] = view_url
    child = None
    if dagster:
        env = dict(os.environ)
        # SIGINT as by default in the child even when this process was started with it ignored (in the
        # background, under nohup): `dagster dev` stops its webserver, daemon and code servers on SIGINT only.
        child = subprocess.Popen(dagster_command(workspace, host, port + 1), cwd=settings.dagster_home, env=env,
                                 preexec_fn=_default_sigint)
    print(f"Monthly batch admin view on {view_url} ; the Dagster UI on {dagster_url} "
          f"(DAGSTER_HOME={settings.dagster_home}). Ctrl-C stops both.", file=sys.stderr, flush=True)
    found = settings.dagster_home / UI_FILE
    found.write_text(json.dumps({"url": webserver, "pid": os.getpid(), "started": time.time()}))
    # uvicorn shuts down on SIGTERM (and SIGHUP, a closed terminal) and then raises the signal again under the
    # handler it found: by default that ends this process on the spot, before `finally`, and `dagster dev`
    # with its webserver, daemon and code servers would outlive it. Ending as Ctrl-C does stops them.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _exit_on_signal)
    try:
        uvicorn.run(create_app(Sources.open(settings, dagster_url)), host=host, port=port, log_level="warning")
    finally:
        found.unlink(missing_ok=True)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="batch_view", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--workspace", type=Path, required=True, help="workspace.yaml of the code location")
    parser.add_argument("--no-dagster", dest="dagster", action="store_false", help="the view alone")
    parser.add_argument("--dagster-url", help="the Dagster UI started elsewhere (default: this host, PORT + 1)")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workspace, args.dagster, args.dagster_url)
