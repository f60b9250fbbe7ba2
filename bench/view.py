"""Server time of the admin view's months and month pages on a big home, printed as JSON.

    python -m bench.view [--months 24] [--requests 20000] [--resources 1000] [--versions 3] [--repeat 20]

The home holds `--months` months of demo inputs with `--versions` versions each (allocations made
here by a first-fit pass, not the solver: the view's time does not depend on how they were made).
Each page is requested in-process (Starlette's TestClient), so the time is the server's: context,
template and response. A page is timed on its first view after a change of its month that leaves the
files as they are (an alert), after a new version of the month (written as a run writes one, with its figures
kept beside it: batch.health.keep_figures), in a process that keeps nothing yet (what the runs kept on disk
read), in one without the kept files either (a home written before they were kept: landed tables and rows
read, figures computed), and shown again; and an approval's round trip (bob approves
alice's finalize request with a software passkey). With --home the home is built there once and each
measurement works on a copy of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
from starlette.testclient import TestClient

from batch.demo_data import generate_month, write_landing
from batch.health import keep_figures
from batch.identity import Signed, canonical
from batch.inputs import load_landing
from batch.metrics import version_metrics
from batch.months import next_month
from batch.passkeys import challenge_of
from batch_view.app import create_app
from batch_view.memo import Memo
from batch_view.sources import Sources
from resources.control_store import ControlStore
from resources.derived_files import CACHE_DIR
from resources.settings import CONTROL_VAR, HOME_VAR, IO_BASE_VAR, Settings
from resources.storage import ExportStore
from solvers.eligibility import monthly_capacity
from tests.view.softkey import SoftKey, unb64

ORIGIN = "http://localhost:3000"

FIRST_MONTH = "2025-01"


def first_fit(tables: dict[str, pd.DataFrame], month: str, version: int, seed: int) -> pd.DataFrame:
    """Allocation rows of one version: requests in a shuffled order onto their group's largest resource
    while it has room; the rest unallocated for lack of capacity."""
    resources = tables["resources"].assign(
        capacity=monthly_capacity(tables["resources"], tables["availability"])
        .reindex(tables["resources"]["resource_id"]).to_numpy())
    biggest = resources.sort_values("capacity").groupby(["service", "region"]).tail(1)
    rows = tables["requests"][["request_id", "customer_id", "service", "region", "priority", "units"]]
    rows = rows.sample(frac=1, random_state=seed).merge(
        biggest[["service", "region", "resource_id", "capacity"]], on=["service", "region"], how="left")
    fits = rows.groupby("resource_id")["units"].cumsum() <= rows["capacity"]
    rows["requested_units"] = rows["units"]
    rows["resource_id"] = rows["resource_id"].where(fits, None)
    rows["units"] = rows["units"].where(fits, 0)
    rows["status"] = np.where(fits, "allocated", "unallocated")
    rows["reason"] = np.where(fits, None, "capacity_exhausted")
    rows["cost"] = 0
    rows.insert(0, "month", month)
    rows.insert(1, "version", version)
    return rows.drop(columns="capacity").sort_values("request_id", ignore_index=True)


def build_home(home: Path, months: int, requests: int, resources: int, versions: int) -> list[str]:
    """Land `months` months and write `versions` versions of each; returns the months."""
    settings = use_home(home)
    store, exports = ControlStore(settings.control_url), ExportStore(home)
    keys = [FIRST_MONTH]
    while len(keys) < months:
        keys.append(next_month(keys[-1]))
    for index, month in enumerate(keys):
        tables = generate_month(month, requests, resources, seed=index)
        write_landing(home, month, tables)
        for version in range(1, versions + 1):
            write_version(store, exports, tables, month, version)
    store.dispose()
    return keys


def use_home(home: Path) -> Settings:
    """The settings of the embedded default under `home`, exported to this process's environment."""
    for name in (HOME_VAR, CONTROL_VAR, IO_BASE_VAR, "DAGSTER_HOME"):
        os.environ.pop(name, None)
    os.environ[HOME_VAR] = str(home)
    settings = Settings.from_env()
    settings.export()
    return settings


def write_version(store: ControlStore, exports: ExportStore, tables: dict[str, pd.DataFrame], month: str,
                  version: int) -> None:
    """A version of the month, written and recorded as a run's export does."""
    capacity = tables["resources"].assign(capacity=monthly_capacity(tables["resources"], tables["availability"])
                                          .reindex(tables["resources"]["resource_id"]).to_numpy())
    rows = first_fit(tables, month, version, seed=version)
    metrics = version_metrics(rows, capacity, tables["requests"])
    note = None if version == 1 else f"iteration {version}"
    info = exports.write_version(month, version, rows, {
        "run_id": f"bench-{month}-{version}", "actor": "alice", "note": note, "parameters": {},
        "input_fingerprint": "bench", "solver": {"status": "FEASIBLE"}, "metrics": metrics})
    store.record_version(month, version, "alice", note, f"bench-{month}-{version}", str(info.path), {}, metrics,
                         "bench")
    keep_figures(exports, month, (version, False))


def kept_or_built(home: Path, months: int, requests: int, resources: int, versions: int) -> list[str]:
    """The months of a home built before with these sizes (its sizes.json says), else a new one built."""
    sizes = {"months": months, "requests": requests, "resources": resources, "versions": versions}
    stamp = home / "bench_sizes.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == sizes:
        use_home(home)
        return sorted(path.name for path in (home / "landing").iterdir())
    if home.exists() and any(home.iterdir()):
        raise SystemExit(f"{home} holds something else than a bench home of these sizes: name an empty folder.")
    keys = build_home(home, months, requests, resources, versions)
    stamp.write_text(json.dumps(sizes))
    return keys


# (wall seconds, CPU seconds of this process): the server runs in this process (TestClient), so its CPU time
# says what a request costs when other processes share the cores, its wall time what a person waits.
Timing = tuple[float, float]


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(started: Timing) -> Timing:
    return time.perf_counter() - started[0], time.process_time() - started[1]


def timed(client: TestClient, path: str) -> Timing:
    started = clock()
    answer = client.get(path)
    elapsed = since(started)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return elapsed


def summary(timings: list[Timing]) -> dict[str, Any]:
    found: dict[str, Any] = {"n": len(timings)}
    for which, index in (("", 0), ("cpu_", 1)):
        ordered = sorted(timing[index] for timing in timings)
        found |= {f"{which}p50_ms": round(statistics.median(ordered) * 1000, 1),
                  f"{which}p95_ms": round(ordered[max(0, int(round(0.95 * len(ordered))) - 1)] * 1000, 1),
                  f"{which}max_ms": round(ordered[-1] * 1000, 1)}
    return found


def change(store: ControlStore, month: str, index: int) -> None:
    """A change of a month that leaves its files as they are, as a sensor's alert makes one: an audit entry
    (the chain's head moves) and one more alert on both pages."""
    store.add_alert(month, "bench_view", "info", "a change", {}, dedup_key=f"bench_view:{month}:{index}")


def new_version(sources: Sources, month: str) -> None:
    """The month's next version, written as a run writes one (its figures are computed on the next view)."""
    tables = load_landing(sources.settings.home, month).present()
    write_version(sources.store, sources.exports, tables, month, (sources.exports.latest_version(month) or 0) + 1)


def measure(keys: list[str], repeat: int) -> dict[str, Any]:
    """Server times of the months page and of month pages (the newest months, as people open them), each the
    first view after a change of the month (an alert; a new version), the first view of a process that keeps
    nothing yet, and views shown again."""
    sources = Sources.open(Settings.from_env(), "http://localhost:3001")
    shown = keys[-min(len(keys), 6):]
    app = create_app(sources)
    found: dict[str, list[Timing]] = {name: [] for name in (
        "months_page_after_a_change", "months_page_again", "month_page_after_a_change",
        "month_page_after_a_new_version", "month_page_nothing_kept", "month_page_nothing_kept_anywhere",
        "month_page_again")}
    with TestClient(app, base_url=ORIGIN) as client:
        timed(client, "/")  # imports and the first connection, paid once per process
        for month in shown:
            timed(client, f"/month/{month}")
        for index in range(repeat):
            month = shown[index % len(shown)]
            change(sources.store, month, index)
            found["months_page_after_a_change"].append(timed(client, "/"))
            found["month_page_after_a_change"].append(timed(client, f"/month/{month}"))
            new_version(sources, month)
            gc.collect()  # the version's garbage is a run's, in another process: not the view's to collect
            found["month_page_after_a_new_version"].append(timed(client, f"/month/{month}"))
            found["months_page_again"].append(timed(client, "/"))
            found["month_page_again"] += [timed(client, f"/month/{month}") for _ in range(3)]
        for index in range(repeat):
            app.state.memo = Memo()  # as a new process: landed tables and figures read again
            found["month_page_nothing_kept"].append(timed(client, f"/month/{shown[index % len(shown)]}"))
        for index in range(repeat):  # and without what the runs kept on disk (a home written before they kept it)
            app.state.memo = Memo()
            shutil.rmtree(sources.settings.home / CACHE_DIR, ignore_errors=True)
            found["month_page_nothing_kept_anywhere"].append(timed(client, f"/month/{shown[index % len(shown)]}"))
        found["approval_round_trip"] = approvals(client, sources, keys[:repeat])
    return {name: summary(seconds) for name, seconds in found.items()}


def approvals(client: TestClient, sources: Sources, months: list[str]) -> list[Timing]:
    """Server time of bob's approval of alice's finalize request, each month once: the view preparing the
    signed action (POST /passkey/challenge) and carrying it out (POST /passkey/act: the action layer verifies
    the passkey assertion, four eyes, the counter and the nonce, and records it). The software authenticator's
    own time (tests/view/softkey.py, between the two) is left out, and the run the approval queues is recorded
    here instead of submitted to a Dagster webserver."""
    sources.submit_run = lambda job, tags, run_config=None: "bench-run"  # type: ignore[method-assign]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/").text)
    assert csrf is not None
    keys = {who: enrol(client, csrf.group(1), who) for who in ("alice", "bob")}
    seconds = []
    for month in months:
        post(client, csrf.group(1), "/signin", person="alice")
        filed, _ = signed(client, csrf.group(1), keys["alice"], action="finalize", month=month,
                          version=str(sources.exports.latest_version(month)), note="bench")
        assert filed.status_code == 200, filed.text
        request = sources.store.requests(month)[-1]
        post(client, csrf.group(1), "/signin", person="bob")
        approved, elapsed = signed(client, csrf.group(1), keys["bob"], action="approve", request_id=request.id)
        assert approved.status_code == 200 and sources.store.request(request.id).status == "approved", approved.text
        seconds.append(elapsed)
    return seconds


def post(client: TestClient, csrf: str, path: str, **fields: str) -> Any:
    return client.post(path, data={"csrf": csrf, **fields}, headers={"origin": ORIGIN}, follow_redirects=False)


def enrol(client: TestClient, csrf: str, who: str) -> SoftKey:
    """`who` signs in on the demo and registers a software passkey through their enrolment link."""
    post(client, csrf, "/signin", person=who)
    link = post(client, csrf, "/passkey/demo-enroll").headers["location"]
    token = Signed.decode(parse_qs(urlsplit(link).query)["token"][0])
    key = SoftKey()
    answer = post(client, csrf, "/passkey/enroll", token=token.encode(),
                  credential=json.dumps(key.register(challenge_of(canonical(token.body())))))
    assert answer.status_code == 200, answer.text
    return key


def signed(client: TestClient, csrf: str, key: SoftKey, **fields: str) -> tuple[Any, Timing]:
    """A change signed with `key` through the view, and the server's time of its two requests."""
    started = clock()
    ready = post(client, csrf, "/passkey/challenge", **fields)
    first = since(started)
    assert ready.status_code == 200, ready.text
    parts = [{"body": p["body"], "mac": p["mac"], "credential": key.assert_(unb64(p["challenge"]))}
             for p in ready.json()["parts"]]
    started = clock()
    answer = post(client, csrf, "/passkey/act", parts=json.dumps(parts))
    second = since(started)
    return answer, (first[0] + second[0], first[1] + second[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--resources", type=int, default=1_000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--home", type=Path, help="build the home in this folder and keep it; a folder built before "
                                                  "with the same sizes is measured again without building")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_view_") as folder:
        started = time.perf_counter()
        keys = kept_or_built(args.home or Path(folder) / "home", args.months, args.requests, args.resources,
                             args.versions)
        built = time.perf_counter() - started
        if args.home:  # the measurement adds versions and requests: on a copy, the kept home stays as built
            shutil.copytree(args.home, Path(folder) / "home")
            use_home(Path(folder) / "home")
        result = {"months": args.months, "requests": args.requests, "resources": args.resources,
                  "versions": args.versions, "build_seconds": round(built, 1), **measure(keys, args.repeat)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
