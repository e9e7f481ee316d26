"""make bench-ingest: manifest import speed and ListDatasetEntries paging speed.

One run, one fresh server (a real process, real HTTP, the stock boto3 client):
1. uploads 20,000 distinct small JPEGs (not timed: getting images in);
2. imports a 20,000-line manifest through UpdateDatasetEntries (chunks under
   the 5 MB limit, each waited for) twice: into a first dataset, where every
   image is checked for the first time, and into a second one, where the
   checks of these existing objects are already known (the figure the target
   is about);
3. pages through the 20,000 entries 100 at a time and times each page;
4. parses and validates 20,000 lines of the real Ground Truth manifests
   (../shared/datasets/groundtruth-manifests) in this process, without the
   server: the CPU seconds it takes, against a 4 s target (CPU time, so a
   busy machine slows the clock, not the figure).
References measured in the same run: the targets (2,000 lines/s; 50 ms per
page; 4 CPU s), the document store alone writing the same entries (the floor
under any import), and a trivial API call's round trip (the floor under any
page).
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from customlabels.adapters.sqlite_documents import SqliteDocumentStore  # noqa: E402
from customlabels.manifests import ImageCheck, RejectedLine, iter_manifest_lines, parse_line, validate_line  # noqa: E402
from services.datasets.records import COLLECTIONS, ENTRIES, entry_doc  # noqa: E402
from customlabels.ports.documents import Put  # noqa: E402
from tests.support.api import classification_line, jpeg, manifest, wait_dataset  # noqa: E402
from tests.support.server import DATASETS, ServerProcess  # noqa: E402

LINES = 20_000
CHUNK = 5_000  # about 1.4 MB of manifest per UpdateDatasetEntries call
BUCKET = "bench"
IMPORT_TARGET = 2_000  # lines/s
PAGE_TARGET_MS = 50.0
VALIDATE_TARGET_CPU_S = 4.0  # 20,000 real manifest lines parsed and validated
MANIFESTS = DATASETS / "groundtruth-manifests"


def import_manifest(client, dataset: str, lines: list[dict]) -> float:
    started = time.perf_counter()
    for start in range(0, len(lines), CHUNK):
        client.update_dataset_entries(DatasetArn=dataset, Changes={"GroundTruth": manifest(lines[start : start + CHUNK])})
        description = wait_dataset(client, dataset, timeout=600)
        assert description["Status"] == "UPDATE_COMPLETE", description.get("StatusMessage")
    return time.perf_counter() - started


def page_times(client, dataset: str) -> list[float]:
    times, token, seen = [], None, 0
    while True:
        started = time.perf_counter()
        page = client.list_dataset_entries(DatasetArn=dataset, MaxResults=100, **({"NextToken": token} if token else {}))
        times.append((time.perf_counter() - started) * 1000)
        seen += len(page["DatasetEntries"])
        token = page.get("NextToken")
        if not token:
            assert seen == LINES, seen
            return times


async def store_floor(lines: list[dict]) -> float:
    """The document store alone writing the same entries in 500-entry commits."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteDocumentStore(Path(tmp) / "floor.sqlite")
        await store.start([c.__class__(f"datasets.{c.name}", c.indexes) for c in COLLECTIONS])
        docs = [
            entry_doc("arn:floor", validate_line(parse_line(__import__("json").dumps(line), i + 1), ImageCheck(width=64, height=64)))
            for i, line in enumerate(lines)
        ]
        started = time.perf_counter()
        for start in range(0, len(docs), 500):
            await store.commit([Put(f"datasets.{ENTRIES}", d) for d in docs[start : start + 500]])
        elapsed = time.perf_counter() - started
        await store.close()
        return elapsed


def validation_cpu_seconds(count: int = LINES) -> float:
    """CPU seconds to parse and validate ``count`` lines taken in turn from the real manifests."""
    pool = [raw for path in sorted(MANIFESTS.rglob("*.manifest")) for _, raw in iter_manifest_lines(path.read_bytes())]
    raws = [pool[i % len(pool)] for i in range(count)]
    started = time.process_time()
    for number, raw in enumerate(raws, 1):
        parsed = parse_line(raw, number)
        assert not isinstance(parsed, RejectedLine), parsed
        validate_line(parsed, None)
    return time.process_time() - started


def row(what: str, value: str, reference: str, ratio: str) -> str:
    return f"| {what:<52} | {value:>14} | {reference:>22} | {ratio:>8} |"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        try:
            client, objects = server.rekognition(), server.objects()
            image = jpeg(64, 64)
            keys = [f"img/{i:05d}.jpg" for i in range(LINES)]
            started = time.perf_counter()
            objects.put_many(BUCKET, [(k, image) for k in keys], workers=8)
            upload_s = time.perf_counter() - started
            lines = [classification_line(BUCKET, k, f"label{i % 10}") for i, k in enumerate(keys)]

            project = client.create_project(ProjectName="bench-ingest")["ProjectArn"]
            first = client.create_dataset(ProjectArn=project, DatasetType="TEST")["DatasetArn"]
            second = client.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
            wait_dataset(client, first), wait_dataset(client, second)
            cold_s = import_manifest(client, first, lines)
            warm_s = import_manifest(client, second, lines)
            times = page_times(client, second)
            started = time.perf_counter()
            for _ in range(20):
                client.describe_projects(MaxResults=1)
            round_trip_ms = (time.perf_counter() - started) / 20 * 1000
        finally:
            server.stop()
    floor_s = asyncio.run(store_floor(lines))
    validate_s = validation_cpu_seconds()

    warm_rate, cold_rate, floor_rate = LINES / warm_s, LINES / cold_s, LINES / floor_s
    n = len(times)
    start_ms, middle_ms, end_ms = (statistics.median(times[a : a + 10]) for a in (1, n // 2 - 5, n - 11))
    print(f"\nbench-ingest: {LINES} lines, {n} pages of 100 (upload of the images, not timed in the import: {upload_s:.1f} s)\n")
    print(row("measure", "measured", "reference", "ratio"))
    print(row("-" * 52, "-" * 14, "-" * 22, "-" * 8))
    print(row("import, images already checked (lines/s)", f"{warm_rate:,.0f}", f"target {IMPORT_TARGET:,}", f"{warm_rate / IMPORT_TARGET:.2f}x"))
    print(row("import, images already checked (lines/s)", f"{warm_rate:,.0f}", f"store alone {floor_rate:,.0f}", f"{warm_rate / floor_rate:.2f}x"))
    print(row("import, first check of every image (lines/s)", f"{cold_rate:,.0f}", f"target {IMPORT_TARGET:,}", f"{cold_rate / IMPORT_TARGET:.2f}x"))
    for name, value in (("start", start_ms), ("middle", middle_ms), ("end", end_ms)):
        print(row(f"ListDatasetEntries page near the {name} (ms, median of 10)", f"{value:.1f}", f"target {PAGE_TARGET_MS:.0f}", f"{value / PAGE_TARGET_MS:.2f}x"))
    print(row("ListDatasetEntries slowest page (ms)", f"{max(times):.1f}", f"target {PAGE_TARGET_MS:.0f}", f"{max(times) / PAGE_TARGET_MS:.2f}x"))
    print(row("ListDatasetEntries page, median (ms)", f"{statistics.median(times):.1f}", f"DescribeProjects {round_trip_ms:.1f}", f"{statistics.median(times) / round_trip_ms:.2f}x"))
    print(row(f"validate {LINES} real manifest lines (CPU s)", f"{validate_s:.2f}", f"target {VALIDATE_TARGET_CPU_S:.1f}", f"{validate_s / VALIDATE_TARGET_CPU_S:.2f}x"))
    ok = warm_rate >= IMPORT_TARGET and max(times) < PAGE_TARGET_MS and validate_s < VALIDATE_TARGET_CPU_S
    print(f"\n{'targets met' if ok else 'TARGETS MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
