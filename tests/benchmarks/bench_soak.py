"""make bench-soak: minutes of saturating DetectCustomLabels while the rest of the product works.

    .venv/bin/python tests/benchmarks/bench_soak.py [--minutes 10] [--clients 16] [--training-budget 60]

One fresh server (the embedded mode of ``make run``, a real process) and
flowers-small trained on it once; two copies of that version run (1-2
inference units each) and ``--clients`` callers, each a stock boto3 client
in standard retry mode, send DetectCustomLabels to them back to back, half
to each. Meanwhile, each in a loop until the time is up:

* **import**: a project, a TRAIN dataset imported from a 200-line Ground
  Truth manifest, its entries counted through the API, then deleted;
* **training**: a version of the flowers project trained (``--training-budget``
  seconds), checked TRAINING_COMPLETED, then deleted;
* **start/stop**: a third copy started, asked, stopped.

Printed: per minute, the calls answered, their p50/p99 latency (as the
caller sees it, retries included), ThrottlingException answers (which the
SDK retries) and 5xx answers, every attempt counted; every 10 s the RSS and
open file descriptors of the server and of each inference unit, and their
growth from the end of the warm-up to the end. At the end, the state is
checked: both loaded versions RUNNING, the cycled one STOPPED, an inference
unit process for exactly the units the service reports, every activity's
cycles completed as checked, no 5xx, no call failed.

``soak()`` is the whole run; ``tests/integration/test_soak.py`` runs a short
one in ``make test``. The callers share the machine's cores with the server
(the figures are the service under a load generator on the same box).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.api import all_entries, classification_line, manifest, wait_dataset  # noqa: E402
from tests.support.models import (  # noqa: E402
    TrainedVersion,
    client,
    flower_photos,
    metrics,
    start,
    stop,
    train_flowers,
    wait_status,
)
from tests.support.procfs import open_fds, process_tree, rss_mb  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402
from tests.support.training import BUDGET_TAG, OUTPUT, wait_version  # noqa: E402

SAMPLE_SECONDS = 10
IMPORT_BUCKET = "soak-images"


# --- the callers -----------------------------------------------------------------------------------
@dataclass
class Calls:
    """Every DetectCustomLabels call (end time, seconds, outcome) and every attempt's answer."""

    started: float = field(default_factory=time.monotonic)
    calls: list[tuple[float, float, str]] = field(default_factory=list)
    attempts: list[tuple[float, int, str]] = field(default_factory=list)  # (time, HTTP status, error code or "")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, seconds: float, outcome: str) -> None:
        with self.lock:
            self.calls.append((time.monotonic() - self.started, seconds, outcome))

    def attempt(self, status: int, code: str) -> None:
        with self.lock:
            self.attempts.append((time.monotonic() - self.started, status, code))

    def minutes(self) -> list[dict]:
        """Per minute: calls answered, p50/p99 ms of those, throttled and 5xx attempts, failed calls."""
        rows = []
        last = max([t for t, _, _ in self.calls] + [0.0])
        for minute in range(int(last // 60) + 1):
            within = lambda t: minute * 60 <= t < (minute + 1) * 60  # noqa: E731
            ok = sorted(s for t, s, outcome in self.calls if within(t) and outcome == "ok")
            rows.append({
                "minute": minute + 1,
                "answered": len(ok),
                "p50_ms": round(1000 * percentile(ok, 50), 1) if ok else None,
                "p99_ms": round(1000 * percentile(ok, 99), 1) if ok else None,
                "throttled": sum(1 for t, _, code in self.attempts if within(t) and code == "ThrottlingException"),
                "5xx": sum(1 for t, status, _ in self.attempts if within(t) and status >= 500),
                "failed": sum(1 for t, _, outcome in self.calls if within(t) and outcome != "ok"),
            })
        return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def counted_client(server: ServerProcess, calls: Calls):
    """A boto3 client (standard retries, as users run it) that reports every attempt's answer to ``calls``."""
    rek = client(server, attempts=10, pool=2)

    def on_attempt(response=None, caught_exception=None, **_) -> None:
        if response is not None:
            http, parsed = response
            calls.attempt(http.status_code, parsed.get("Error", {}).get("Code", ""))
        elif caught_exception is not None:
            calls.attempt(0, type(caught_exception).__name__)

    # Before the retry handler (registered on the same event), which may answer first and end the emit.
    rek.meta.events.register_first("needs-retry.rekognition", on_attempt)
    return rek


def caller(server: ServerProcess, arn: str, photos: list[bytes], calls: Calls, stop_event: threading.Event, n: int) -> None:
    rek = counted_client(server, calls)
    i = n
    while not stop_event.is_set():
        image = photos[i % len(photos)]
        i += 7
        started = time.perf_counter()
        try:
            rek.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
            outcome = "ok"
        except Exception as error:  # noqa: BLE001 - counted and reported, whatever it is
            outcome = getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
        calls.call(time.perf_counter() - started, outcome)


# --- processes -------------------------------------------------------------------------------------
class Watch(threading.Thread):
    """Every ``interval`` s: RSS (MB) and open fds of the server and each of its descendants."""

    def __init__(self, root: int, interval: float, out: Callable[[str], None]) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.out = root, interval, out
        self.started = time.monotonic()
        self.samples: dict[tuple[int, str], list[tuple[float, float, int]]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while True:
            self.sample()
            if self.halt.wait(self.interval):
                self.sample()
                return

    def sample(self) -> None:
        at = time.monotonic() - self.started
        line = []
        for pid, label in sorted(process_tree(self.root).items()):
            rss, fds = rss_mb(pid), open_fds(pid)
            if rss is not None and fds is not None:
                self.samples.setdefault((pid, label), []).append((at, rss, fds))
                line.append(f"{label}[{pid}] {rss:.0f} MB {fds} fds")
        self.out(f"  {at:6.0f} s  " + "; ".join(line))

    def growth(self, warmup: float) -> list[dict]:
        """Per process alive from the end of the warm-up to the end: its RSS and fds then and at the end."""
        rows = []
        for (pid, label), samples in self.samples.items():
            after = [s for s in samples if s[0] >= warmup]
            if len(after) < 2 or samples[-1][0] < max(s[0] for v in self.samples.values() for s in v) - self.interval:
                continue  # came after the warm-up, or went before the end
            (t0, rss0, fds0), (t1, rss1, fds1) = after[0], after[-1]
            rows.append({"process": f"{label}[{pid}]", "from_s": round(t0), "to_s": round(t1),
                         "rss_mb": [round(rss0), round(rss1)], "rss_growth_mb": round(rss1 - rss0, 1),
                         "fds": [fds0, fds1], "fd_growth": fds1 - fds0,
                         "rss_peak_mb": round(max(s[1] for s in samples))})
        return rows


# --- the activities --------------------------------------------------------------------------------
class Activity(threading.Thread):
    """``cycle(n)`` again and again until told to stop (the cycle under way finishes); what went wrong is kept."""

    def __init__(self, name: str, cycle: Callable[[int], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.cycle, self.cycles, self.problems = cycle, 0, []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.cycle(self.cycles)
                self.cycles += 1
            except Exception as error:  # noqa: BLE001 - reported at the end
                self.problems.append(f"{self.name} cycle {self.cycles}: {type(error).__name__}: {error}")
                if len(self.problems) >= 3:
                    return
                time.sleep(2)


def retry_in_use(call: Callable[[], object], seconds: float = 60) -> object:
    """``call()``, again while it answers ResourceInUseException (a status the caller's events will change)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code != "ResourceInUseException" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def import_cycle(server: ServerProcess, lines: int) -> Callable[[int], None]:
    rek = server.rekognition()

    def cycle(n: int) -> None:
        project = rek.create_project(ProjectName=f"soak-import-{n}")["ProjectArn"]
        dataset = rek.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": IMPORT_BUCKET, "Name": "soak.manifest"}}})["DatasetArn"]
        description = wait_dataset(rek, dataset, timeout=300)
        assert description["Status"] == "CREATE_COMPLETE", description.get("StatusMessage")
        assert description["DatasetStats"]["TotalEntries"] == lines, description["DatasetStats"]
        assert len(all_entries(rek, dataset)) == lines
        rek.delete_dataset(DatasetArn=dataset)
        retry_in_use(lambda: rek.delete_project(ProjectArn=project))

    return cycle


def training_cycle(version: TrainedVersion, budget: int) -> Callable[[int], None]:
    rek = version.server.rekognition()

    def cycle(n: int) -> None:
        name = f"soak-{n}"
        arn = retry_in_use(lambda: rek.create_project_version(
            ProjectArn=version.project_arn, VersionName=name, OutputConfig=OUTPUT,
            Tags={BUDGET_TAG: str(budget)}))["ProjectVersionArn"]
        description = wait_version(rek, version.project_arn, name, timeout=budget * 4 + 300)
        assert description["Status"] == "TRAINING_COMPLETED", description.get("StatusMessage")
        retry_in_use(lambda: rek.delete_project_version(ProjectVersionArn=arn))

    return cycle


def start_stop_cycle(version: TrainedVersion, photo: bytes) -> Callable[[int], None]:
    rek = version.server.rekognition()

    def cycle(n: int) -> None:
        start(version, min_units=1, timeout=300)
        for _ in range(3):
            assert rek.detect_custom_labels(ProjectVersionArn=version.version_arn, Image={"Bytes": photo})["CustomLabels"]
        stop(version, timeout=120)

    return cycle


# --- the run ---------------------------------------------------------------------------------------
@dataclass
class Report:
    minutes: list[dict]
    growth: list[dict]
    activities: dict[str, int]
    problems: list[str]
    totals: dict

    def lines(self) -> list[str]:
        out = ["minute  answered  p50 ms  p99 ms  throttled  5xx  failed"]
        out += [f"{r['minute']:6d}  {r['answered']:8d}  {r['p50_ms'] or 0:6.1f}  {r['p99_ms'] or 0:6.1f}  "
                f"{r['throttled']:9d}  {r['5xx']:3d}  {r['failed']:6d}" for r in self.minutes]
        out.append("growth after warm-up (RSS MB, open fds):")
        out += [f"  {g['process']:32s} RSS {g['rss_mb'][0]} -> {g['rss_mb'][1]} ({g['rss_growth_mb']:+.1f}, peak "
                f"{g['rss_peak_mb']}), fds {g['fds'][0]} -> {g['fds'][1]} ({g['fd_growth']:+d}), "
                f"{g['from_s']}-{g['to_s']} s" for g in self.growth]
        out.append(f"activities (cycles completed): {self.activities}")
        out.append(f"totals: {self.totals}")
        out.append("state consistent at the end" if not self.problems else "PROBLEMS:\n  " + "\n  ".join(self.problems))
        return out


def soak(minutes: float = 10, clients: int = 16, training_budget: int = 60, warmup: float | None = None,
         data_dir: Path | None = None, out: Callable[[str], None] = print) -> Report:
    """The whole run on a fresh server in ``data_dir`` (a temporary folder by default)."""
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        server = ServerProcess(Path(data_dir or tmp) / "data", extra_env={"CUSTOMLABELS_LOG_LEVEL": "WARNING"}).start()
        try:
            return _soak(server, minutes, clients, training_budget, warmup, out)
        finally:
            server.stop()


def _soak(server: ServerProcess, minutes: float, clients: int, training_budget: int, warmup: float | None,
          out: Callable[[str], None]) -> Report:
    out(f"setting up: flowers-small trained once, two running copies, a third to cycle (server pid {server.process.pid})")
    trained = train_flowers(server, project="soak", budget="10")
    rek = server.rekognition()
    loaded = [trained, *(copy_version(trained, name) for name in ("load-b", "cycled"))]
    cycled = loaded.pop()
    for version in loaded:
        start(version, min_units=1, max_units=2, timeout=300)
    photos = [data for _, data in flower_photos(per_label=4)]
    imported = [data for _, data in flower_photos(per_label=40)]
    objects = server.objects()
    objects.put_many(IMPORT_BUCKET, [(f"{n:03d}.jpg", data) for n, data in enumerate(imported)])
    labels = [label for label, _ in flower_photos(per_label=40)]
    objects.put(IMPORT_BUCKET, "soak.manifest", manifest(
        [classification_line(IMPORT_BUCKET, f"{n:03d}.jpg", label) for n, label in enumerate(labels)]))

    seconds = minutes * 60
    warmup = min(120.0, seconds / 4) if warmup is None else warmup
    calls = Calls()
    watch = Watch(server.process.pid, SAMPLE_SECONDS, out)
    stop_callers = threading.Event()
    threads = [threading.Thread(target=caller, args=(server, loaded[n % 2].version_arn, photos, calls, stop_callers, n),
                                daemon=True) for n in range(clients)]
    activities = [Activity("import", import_cycle(server, len(imported))),
                  Activity("training", training_cycle(trained, training_budget)),
                  Activity("start-stop", start_stop_cycle(cycled, photos[0]))]
    out(f"soaking for {minutes:g} min: {clients} callers over 2 versions, with {', '.join(a.name for a in activities)}")
    watch.start()
    for thread in (*threads, *activities):
        thread.start()
    deadline, shown = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        complete = calls.minutes()[:int((time.monotonic() - calls.started) // 60)]
        for row in complete[shown:]:
            out(f"  {json.dumps(row)}")
        shown = len(complete)
    stop_callers.set()
    for activity in activities:
        activity.halt.set()
    for thread in threads:
        thread.join(120)
    for activity in activities:
        activity.join(training_budget * 4 + 400)
    watch.halt.set()
    watch.join(30)

    problems = [p for activity in activities for p in activity.problems]
    problems += [f"{a.name}: no cycle completed" for a in activities if a.cycles == 0 and not a.problems]
    problems += consistency(server, rek, loaded, cycled)
    minutes_rows = calls.minutes()
    outcomes = Counter(outcome for _, _, outcome in calls.calls)
    totals = {"calls": len(calls.calls), "answered": outcomes["ok"],
              "failed": {k: v for k, v in outcomes.items() if k != "ok"},
              "throttled_attempts": sum(r["throttled"] for r in minutes_rows),
              "5xx_attempts": sum(r["5xx"] for r in minutes_rows),
              "other_4xx_attempts": sum(1 for _, status, code in calls.attempts
                                        if 400 <= status < 500 and code != "ThrottlingException"),
              "p50_ms": round(1000 * percentile([s for _, s, o in calls.calls if o == "ok"], 50), 1),
              "p99_ms": round(1000 * percentile([s for _, s, o in calls.calls if o == "ok"], 99), 1),
              "cores": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in os.getloadavg()]}
    if totals["5xx_attempts"]:
        problems.append(f"{totals['5xx_attempts']} answers were 5xx")
    if totals["failed"]:
        problems.append(f"calls failed: {totals['failed']}")
    if totals["other_4xx_attempts"]:
        problems.append(f"{totals['other_4xx_attempts']} answers were 4xx other than ThrottlingException")
    report = Report(minutes_rows, watch.growth(warmup), {a.name: a.cycles for a in activities}, problems, totals)
    for line in report.lines():
        out(line)
    return report


def copy_version(source: TrainedVersion, name: str) -> TrainedVersion:
    rek = source.server.rekognition()
    arn = rek.copy_project_version(
        SourceProjectArn=source.project_arn, SourceProjectVersionArn=source.version_arn,
        DestinationProjectArn=source.project_arn, VersionName=name,
        OutputConfig={"S3Bucket": "customlabels-output", "S3KeyPrefix": "copies/"})["ProjectVersionArn"]
    copy = TrainedVersion(source.server, source.project_arn, arn, name, {})
    wait_status(copy, "COPYING_COMPLETED", timeout=120)
    return copy


def consistency(server: ServerProcess, rek, loaded: list[TrainedVersion], cycled: TrainedVersion) -> list[str]:
    """What must hold once the load and the activities have stopped."""
    problems = []
    for version in loaded:
        if (status := version.describe()["Status"]) != "RUNNING":
            problems.append(f"{version.version_name} is {status}, not RUNNING")
    if (status := cycled.describe()["Status"]) != "STOPPED":
        problems.append(f"the cycled version is {status}, not STOPPED")
    deadline = time.monotonic() + 30
    while True:  # units retiring after the load (scale-in) may take a moment
        units = {pid: label for pid, label in process_tree(server.process.pid).items() if label.startswith("unit-")}
        reported = sum(value for name, _, value in metrics(server) if name == "customlabels_inference_units")
        if len(units) == reported or time.monotonic() > deadline:
            break
        time.sleep(1)
    if len(units) != reported:
        problems.append(f"{len(units)} inference unit processes, {reported:g} units reported: {units}")
    strays = [label for label in units.values() if not any(label.startswith(f"unit-{v.version_name}-") for v in loaded)]
    if strays:
        problems.append(f"units of versions that are not running: {strays}")
    expected = sorted(v.version_name for v in (*loaded, cycled))

    def versions() -> list[str]:
        found = rek.describe_project_versions(ProjectArn=loaded[0].project_arn)["ProjectVersionDescriptions"]
        return sorted(d["ProjectVersionArn"].split("/")[-2] for d in found)

    def projects() -> list[str]:
        arns = [p["ProjectArn"] for p in rek.describe_projects()["ProjectDescriptions"]]
        return [arn.split("/")[-2] for arn in arns if arn != loaded[0].project_arn]

    deadline = time.monotonic() + 60  # the last deletions finish by themselves
    while (versions() != expected or projects()) and time.monotonic() < deadline:
        time.sleep(1)
    if versions() != expected:
        problems.append(f"versions left in the project: {versions()}, expected {expected}")
    if projects():
        problems.append(f"projects left by the import cycles: {projects()}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long the load lasts (default 10)")
    parser.add_argument("--clients", type=int, default=16, help="boto3 callers (default 16)")
    parser.add_argument("--training-budget", type=int, default=60, help="each training's budget in seconds (default 60)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the server is stopped on the way out
    report = soak(args.minutes, args.clients, args.training_budget, out=lambda line: print(line, flush=True))
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
