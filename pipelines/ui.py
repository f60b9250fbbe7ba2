"""`make ui`: the Dagster webserver and daemon on the configured instance (embedded or PostgreSQL)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from pipelines.orchestration import REPO_ROOT, prepare_dagster_home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    home = prepare_dagster_home()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    workspace = str(REPO_ROOT / "workspace.yaml")
    bindir = os.path.dirname(sys.executable)
    procs = [
        subprocess.Popen([os.path.join(bindir, "dagster-daemon"), "run", "-w", workspace], env=env, cwd=REPO_ROOT),
        subprocess.Popen([os.path.join(bindir, "dagster-webserver"), "-w", workspace, "-h", args.host,
                          "-p", str(args.port)], env=env, cwd=REPO_ROOT),
    ]
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home}); Ctrl-C stops both.")

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    # `kill` of this process stops the webserver and the daemon too, not only Ctrl-C.
    signal.signal(signal.SIGTERM, stop)
    try:
        procs[1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
