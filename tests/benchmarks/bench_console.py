"""make bench-console: the web console's speed, in headless Chromium from Debian.

One run, one fresh server (a real ``customlabels serve`` process):
1. a 20,000-image dataset (small JPEGs, imported from a manifest; not timed):
   the grid page's server time (first page, and a page near the end reached
   through NextToken), and in Chromium the time to first contentful paint and
   to a usable page (the grid's script has run), against the targets
   (500 ms server, 1 s first paint);
2. thumbnails of 200 real photos (flowers-small): made on first request
   (uncached) and again (cached), p50, with their size;
3. the same 200 photos uploaded from the browser (a folder dropped on the
   page: parallel PUTs, then the import) beside the CLI uploading them
   (``customlabels upload``, 8 workers) and importing them
   (``customlabels import-folder``), images/s each, same server, same run;
4. a scripted labeler in the grid: keystrokes and seconds per image (one
   number key per image, the focus moving on by itself);
5. a scripted reviewer in the review queue: 40 human loops started through
   the A2I API on photos of the uploaded dataset, a quarter of them with a
   wrong prediction; per image, A (accept) or the right label's number:
   keystrokes and seconds per image until every answer is saved (the next
   image shows as soon as a key is pressed; answers are sent meanwhile).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY  # noqa: E402
from tests.support.api import all_entries, classification_line, jpeg, manifest, wait_dataset  # noqa: E402
from tests.support.feedback import client, create_flow  # noqa: E402
from tests.support.server import DATASETS, REPO, ServerProcess  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ENTRIES = 20_000
CHUNK = 5_000
FLOWERS = DATASETS / "flowers-small"
GRID_SERVER_TARGET_MS = 500
FIRST_PAINT_TARGET_MS = 1000
THUMBNAIL_TARGET_KB = 15  # console.md: ~15 KB


class Browserless:
    """A signed-in HTTP client (a session cookie, no browser), for server times."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.http = urllib3.PoolManager()
        answer = self.http.request("POST", f"{endpoint}/console/sign-in", redirect=False,
                                   fields={"access_key": DEV_ACCESS_KEY, "secret": DEV_SECRET_KEY, "next": "/console/projects"},
                                   encode_multipart=False, headers={"Origin": endpoint})
        assert answer.status == 303, answer.data
        self.cookie = answer.headers["Set-Cookie"].split(";", 1)[0]

    def get(self, path: str) -> tuple[float, urllib3.BaseHTTPResponse]:
        started = time.perf_counter()
        answer = self.http.request("GET", self.endpoint + path, headers={"Cookie": self.cookie}, redirect=False)
        elapsed = (time.perf_counter() - started) * 1000
        assert answer.status == 200, (path, answer.status, answer.data[:300])
        return elapsed, answer


def cli(server: ServerProcess, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=server.env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - started


def big_dataset(server: ServerProcess) -> None:
    client, objects = server.rekognition(), server.objects()
    image = jpeg(96, 80)
    keys = [f"grid/{i:05d}.jpg" for i in range(ENTRIES)]
    objects.put_many("bench-console", [(k, image) for k in keys], workers=8)
    project = client.create_project(ProjectName="grid20k")["ProjectArn"]
    dataset = client.create_dataset(ProjectArn=project, DatasetType="TRAIN")["DatasetArn"]
    wait_dataset(client, dataset)
    lines = [classification_line("bench-console", k, f"label{i % 10}") for i, k in enumerate(keys)]
    for start in range(0, ENTRIES, CHUNK):
        client.update_dataset_entries(DatasetArn=dataset, Changes={"GroundTruth": manifest(lines[start : start + CHUNK])})
        assert wait_dataset(client, dataset, timeout=900)["Status"] == "UPDATE_COMPLETE"


def grid_server_times(http: Browserless) -> tuple[list[float], list[float]]:
    """Server time of the first page (10 times) and of a page near the end (10 times)."""
    first = [http.get("/console/projects/grid20k/datasets/train")[0] for _ in range(10)]
    token, page = None, 1
    while page < ENTRIES // 50 - 5:  # walk the NextTokens the way the Next button does (untimed)
        answer = http.get("/console/projects/grid20k/datasets/train/entries.json" + (f"?token={token}" if token else ""))[1]
        token, page = json.loads(answer.data)["next"], page + 1
    deep = [http.get(f"/console/projects/grid20k/datasets/train?token={token}&page={page}")[0] for _ in range(10)]
    return first, deep


def signed_in(browser, endpoint: str):
    """A new browser context at 1280x800, signed in: (context, page)."""
    context = browser.new_context(base_url=endpoint, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto("/console/sign-in")
    page.fill("#access_key", DEV_ACCESS_KEY)
    page.fill("#secret", DEV_SECRET_KEY)
    page.click("#sign-in")
    return context, page


def paint_times(browser, endpoint: str, path: str, runs: int = 5) -> tuple[list[float], list[float], int]:
    """First contentful paint and 'usable' (DOMContentLoaded after the module scripts ran), in ms from navigation."""
    context, page = signed_in(browser, endpoint)
    paints, usable = [], []
    for _ in range(runs):
        page.goto(path, wait_until="load")
        page.wait_for_selector(".tile[tabindex='0']")
        timing = page.evaluate("""() => {
            const nav = performance.getEntriesByType('navigation')[0];
            const paint = performance.getEntriesByName('first-contentful-paint')[0];
            return [paint ? paint.startTime : -1, nav.domContentLoadedEventEnd];
        }""")
        paints.append(timing[0])
        usable.append(timing[1])
    html_bytes = len(page.content().encode())
    context.close()
    return paints, usable, html_bytes


def upload_from_browser(browser, endpoint: str) -> tuple[float, float]:
    """Seconds for the 200 photos: the parallel upload alone, and upload + import until checked."""
    context, page = signed_in(browser, endpoint)
    page.fill("#name", "browser-upload")
    page.click("text=Create project")
    page.goto("/console/projects/browser-upload/datasets/new?kind=train")
    page.check("input[value=folders]")
    page.set_input_files("#pick-folder", str(FLOWERS))
    started = time.perf_counter()
    page.click("#start-upload")
    page.wait_for_selector("#open-dataset", timeout=600_000)
    total = time.perf_counter() - started
    upload = float(page.get_attribute("#upload-form", "data-upload-seconds"))
    context.close()
    return upload, total


def label_by_keyboard(browser, endpoint: str, images: int = 40) -> tuple[float, int]:
    """A scripted labeler in the grid: per image, one number key; seconds per image until all are saved."""
    context, page = signed_in(browser, endpoint)
    page.goto("/console/projects/browser-upload/datasets/train")
    labels = json.loads(page.text_content("#page-data"))["labels"]
    page.locator(".tile").first.focus()
    keys = 0
    started = time.perf_counter()
    for i in range(images):
        page.keyboard.press(str(1 + i % len(labels)))
        keys += 1
    page.wait_for_selector("body[data-save-state='All changes saved']", timeout=120_000)
    seconds = (time.perf_counter() - started) / images
    context.close()
    return seconds, keys / images


def review_by_keyboard(browser, endpoint: str, project: str = "browser-upload", loops: int = 40) -> tuple[float, float]:
    """A scripted reviewer in the queue: per image, A when the prediction is right, else the right
    label's number; (seconds per image until every answer is saved, keystrokes per image)."""
    rekognition = client(endpoint, "rekognition")
    sagemaker, a2i = client(endpoint, "sagemaker"), client(endpoint, "sagemaker-a2i-runtime")
    found = rekognition.describe_projects(ProjectNames=[project])["ProjectDescriptions"][0]
    train = next(d["DatasetArn"] for d in found["Datasets"] if d["DatasetType"] == "TRAIN")
    truth = {}
    for line in all_entries(rekognition, train):
        names = [v["class-name"] for k, v in line.items() if k.endswith("-metadata") and isinstance(v, dict) and "class-name" in v]
        if len(names) == 1:
            truth[line["source-ref"]] = names[0]
    labels = sorted(set(truth.values()))
    flow = create_flow(sagemaker, "bench-review", task_count=1)
    answers = {}
    for number, (ref, label) in enumerate(sorted(truth.items())[:: max(1, len(truth) // loops)][:loops]):
        predicted = labels[(labels.index(label) + 1) % len(labels)] if number % 4 == 3 else label
        a2i.start_human_loop(HumanLoopName=f"bench-{number}", FlowDefinitionArn=flow, HumanLoopInput={"InputContent": json.dumps({
            "taskObject": ref, "projectArn": found["ProjectArn"], "taskType": "classification",
            "customLabels": [{"Name": predicted, "Confidence": 80.0}]})})
        answers[f"bench-{number}"] = "a" if predicted == label else str(labels.index(label) + 1)
    context, page = signed_in(browser, endpoint)
    page.goto("/console/review?flow=bench-review")
    page.wait_for_selector("body[data-task]")
    keys = 0
    started = time.perf_counter()
    for _ in answers:
        name = page.evaluate("document.body.dataset.task")
        page.keyboard.press(answers[name])
        keys += 1
        page.wait_for_selector(f"body:not([data-task='{name}'])")  # the key was taken: the next image is on its way
        page.wait_for_selector("body[data-task], body[data-queue='empty']")  # ... and shown
    page.wait_for_selector(f"body[data-pending='0'][data-answered='{len(answers)}']", timeout=120_000)
    seconds = (time.perf_counter() - started) / len(answers)
    context.close()
    return seconds, keys / len(answers)


def row(what: str, value: str, reference: str) -> str:
    return f"| {what:<58} | {value:>12} | {reference:>34} |"


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        try:
            started = time.perf_counter()
            big_dataset(server)
            setup_s = time.perf_counter() - started
            http = Browserless(server.endpoint)
            first, deep = grid_server_times(http)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
                paints, usable, html_bytes = paint_times(browser, server.endpoint, "/console/projects/grid20k/datasets/train")
                upload_s, browser_total_s = upload_from_browser(browser, server.endpoint)
                cli_upload_s = cli(server, "upload", str(FLOWERS), "--bucket", "cli-upload", "--prefix", "flowers/")
                cli_import_s = cli(server, "import-folder", str(FLOWERS), "--project", "cli-import", "--create-project")
                # thumbnails of the 200 real photos: the grid's 4 pages, uncached then cached
                thumbs, token = [], None
                for _ in range(4):
                    path = "/console/projects/browser-upload/datasets/train/entries.json"
                    answer = json.loads(http.get(path + (f"?token={token}" if token else ""))[1].data)
                    thumbs += [e["thumb"] for e in answer["entries"]]
                    token = answer["next"]
                uncached = [http.get(url)[0] for url in thumbs]
                sizes = [len(http.get(url)[1].data) for url in thumbs]
                cached = [http.get(url)[0] for url in thumbs]
                per_image_s, keys_per_image = label_by_keyboard(browser, server.endpoint)
                review_s, review_keys = review_by_keyboard(browser, server.endpoint)
                browser.close()
        finally:
            server.stop()

    p50 = statistics.median
    photos = len(thumbs)
    print(f"\nbench-console: {ENTRIES:,}-image dataset (set up in {setup_s:.0f} s, not timed), {photos} real photos, "
          f"headless Chromium {CHROMIUM}\n")
    print(row("measure", "measured", "reference (same run where measured)"))
    print(row("-" * 58, "-" * 12, "-" * 34))
    print(row("grid page 1 of 400, server time p50 / max (ms)", f"{p50(first):.0f} / {max(first):.0f}", f"target {GRID_SERVER_TARGET_MS}"))
    print(row("grid page 395 of 400 (via NextToken), server p50 / max (ms)", f"{p50(deep):.0f} / {max(deep):.0f}", f"target {GRID_SERVER_TARGET_MS}"))
    print(row("grid page, first contentful paint p50 / max (ms)", f"{p50(paints):.0f} / {max(paints):.0f}", f"target {FIRST_PAINT_TARGET_MS}"))
    print(row("grid page, usable (scripts run) p50 (ms)", f"{p50(usable):.0f}", f"target {FIRST_PAINT_TARGET_MS}"))
    print(row("grid page HTML (KB)", f"{html_bytes / 1024:.0f}", "console.md: < 100"))
    print(row("thumbnail, uncached p50 / max (ms)", f"{p50(uncached):.1f} / {max(uncached):.0f}", f"cached p50 {p50(cached):.1f}"))
    print(row("thumbnail, cached p50 (ms)", f"{p50(cached):.1f}", "—"))
    print(row("thumbnail size p50 (KB)", f"{p50(sizes) / 1024:.1f}", f"console.md: ~{THUMBNAIL_TARGET_KB}"))
    print(row(f"upload of {photos} photos from the browser (images/s)", f"{photos / upload_s:.0f}", f"CLI upload (process start incl.): {photos / cli_upload_s:.0f}"))
    print(row("upload + import from the browser (images/s)", f"{photos / browser_total_s:.0f}", f"CLI import-folder: {photos / cli_import_s:.0f}"))
    print(row("grid labeling: keystrokes per image", f"{keys_per_image:.0f}", "reference console: click, pick, save"))
    print(row("grid labeling: seconds per image, until saved", f"{per_image_s:.2f}", "—"))
    print(row("review queue: keystrokes per image", f"{review_keys:.0f}", "A2I worker UI: click an answer, click Submit"))
    print(row("review queue: seconds per image, until saved", f"{review_s:.2f}", f"grid labeling, same run: {per_image_s:.2f}"))
    ok = max(p50(first), p50(deep)) <= GRID_SERVER_TARGET_MS and p50(paints) <= FIRST_PAINT_TARGET_MS
    print(f"\n{'targets met' if ok else 'TARGETS MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
