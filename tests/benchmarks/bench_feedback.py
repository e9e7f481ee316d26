"""make bench-feedback: what the feedback loop costs, and what it is worth.

One fresh server (a real process, the embedded mode of ``make run``), stock
clients over HTTP, flowers-small (5 labels x 40 photos) split per seed into a
fixed TEST set (10 per label), a SEED set v1 trains on (10 per label) and a
STREAM (the other 20 per label) the served model sees.

(a) Capture's cost. v1 and two copies of it (CopyProjectVersion: the same
    ONNX file) run side by side: v1 bound to a flow definition with no
    conditions (every answer opens a loop: the most capture can cost), one
    copy to a flow as a user would write one (no label reaches 70 %, or a 2 %
    sample), one copy to nothing. DetectCustomLabels goes to the three in
    turn, image by image (the order rotated every image), over the stream,
    several rounds, from lean signed keep-alive clients (``SignedDetect``):
    p50 and p99 of each, measured in the same run under the same load.
    Target: at most 2 ms added at p99.
(b) Answer -> entry: each of the loops (a) opened is answered through the
    review API (AnswerReviewTask, the true label) and ListDatasetEntries is
    polled (every 5 ms) until the entry is in TRAIN: p50 and p95 of that
    time. Target (embedded): p95 <= 200 ms.
(c) What the loop is worth, per seed: v1's F1 on the TEST set; then two
    versions trained on SEED + K reviewed stream images, with the same
    budget, evaluated on the same TEST set: K taken from the review queue's
    head (ListReviewTasks: least confident first, what the product shows a
    reviewer) and K taken at random. Answers are scripted from the true
    labels. Means over the seeds, with each seed's figures.

Options: --seeds N (default 3), --answers K (default 25), --budget S (each
version's training budget, default 30 s), --rounds R for (a) (default 5).
The default run takes about 12 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.api import classification_line, create_from_manifest, wait_dataset  # noqa: E402
from tests.support.feedback import UNCERTAIN, client, create_flow, flower_split, review, sampling, wait_for  # noqa: E402
from tests.support.models import SignedDetect  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

BUCKET = "benchfeedback"
OUTPUT = {"S3Bucket": "customlabels-output", "S3KeyPrefix": "bench-feedback/"}
FLOW_TAG = "customlabels:flow-definition"
BUDGET_TAG = "customlabels:max-training-seconds"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Bench:
    def __init__(self, server: ServerProcess, budget: int):
        self.server = server
        self.rekognition = server.rekognition()
        self.objects = server.objects()
        self.sagemaker = client(server.endpoint, "sagemaker")
        self.reviews = review(server.endpoint)
        self.budget = budget

    def flow(self, seed: int) -> str:
        """A flow definition with no conditions (every answer is reviewed), one per seed: a flow opens
        one loop per image, and the seeds' streams share images."""
        return create_flow(self.sagemaker, f"bench-every-answer-{seed}")

    # --- projects and versions --------------------------------------------------------
    def project(self, name: str, train: list[tuple[str, Path]], test: list[tuple[str, Path]]) -> str:
        project = self.rekognition.create_project(ProjectName=name)["ProjectArn"]
        for dataset_type, items in (("TRAIN", train), ("TEST", test)):
            lines = [classification_line(BUCKET, f"{label}/{path.name}", label) for label, path in items]
            dataset = create_from_manifest(self.rekognition, self.objects, project, BUCKET, lines, dataset_type)
            assert wait_dataset(self.rekognition, dataset)["Status"] == "CREATE_COMPLETE"
        return project

    def train(self, project: str, name: str) -> str:
        def create():
            try:
                return self.rekognition.create_project_version(
                    ProjectArn=project, VersionName=name, OutputConfig=OUTPUT, Tags={BUDGET_TAG: str(self.budget)})["ProjectVersionArn"]
            except self.rekognition.exceptions.ResourceInUseException:
                return None  # the projects service has not heard the datasets are complete yet
        return wait_for(create, bool, f"CreateProjectVersion {name}", timeout=60)

    def f1(self, project: str, name: str) -> float:
        self.rekognition.get_waiter("project_version_training_completed").wait(
            ProjectArn=project, VersionNames=[name], WaiterConfig={"Delay": 2, "MaxAttempts": 600})
        (described,) = self.rekognition.describe_project_versions(ProjectArn=project, VersionNames=[name])["ProjectVersionDescriptions"]
        return described["EvaluationResult"]["F1Score"]

    def start(self, project: str, arn: str) -> None:
        self.rekognition.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
        self.rekognition.get_waiter("project_version_running").wait(
            ProjectArn=project, VersionNames=[arn.split("/")[-2]], WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})

    def stop(self, arn: str) -> None:
        self.rekognition.stop_project_version(ProjectVersionArn=arn)

    # --- the loop ------------------------------------------------------------------------
    def queue(self, flow_name: str, expected: int) -> list[dict]:
        """Every open loop of the flow, in the review queue's order (least confident first)."""
        def everything():
            pages = self.reviews.get_paginator("list_review_tasks").paginate(FlowDefinitionName=flow_name)
            return [task for page in pages for task in page["ReviewTasks"]]
        return wait_for(everything, lambda tasks: len(tasks) >= expected, f"{expected} loops of {flow_name}", timeout=120)


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def capture_cost(bench: Bench, project: str, v1: str, flow: str, stream: list[tuple[str, Path]], rounds: int) -> dict:
    """(a): three versions of one model, interleaved image by image: v1 bound to ``flow`` (every answer
    reviewed: the most capture can cost), a copy bound to a flow as a user would write one (no label
    reaches 70 %, or a 2 % sample), and a copy bound to nothing."""
    realistic = create_flow(bench.sagemaker, "bench-unsure-or-sampled", {"Or": [UNCERTAIN, sampling(2)]})
    versions = {"every answer": v1}
    for kind, name in (("as a user would", "v1-copy-a"), ("off", "v1-copy-b")):
        versions[kind] = bench.rekognition.copy_project_version(
            SourceProjectArn=project, SourceProjectVersionArn=v1, DestinationProjectArn=project, VersionName=name,
            OutputConfig=OUTPUT)["ProjectVersionArn"]
        status = wait_for(lambda: bench.rekognition.describe_project_versions(ProjectArn=project, VersionNames=[name])
                          ["ProjectVersionDescriptions"][0]["Status"], lambda s: not s.endswith("_IN_PROGRESS"), name, 300)
        assert status == "COPYING_COMPLETED", status
    bench.rekognition.tag_resource(ResourceArn=v1, Tags={FLOW_TAG: flow})
    bench.rekognition.tag_resource(ResourceArn=versions["as a user would"], Tags={FLOW_TAG: realistic})
    for arn in versions.values():
        bench.start(project, arn)
    callers = {kind: SignedDetect(bench.server.endpoint) for kind in versions}
    bodies = [{kind: SignedDetect.body(arn, path.read_bytes()) for kind, arn in versions.items()} for _, path in stream]
    for per_kind in bodies[:5]:  # warm every path (connections, caches); these images are left out below
        for kind, body in per_kind.items():
            callers[kind].call(body)
    kinds = list(versions)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for index, per_kind in enumerate(bodies[5:]):
            for kind in kinds[index % 3:] + kinds[:index % 3]:  # each kind first, second and third in turn
                started = time.perf_counter()
                status, answer = callers[kind].call(per_kind[kind])
                times[kind].append((time.perf_counter() - started) * 1000)
                assert status == 200, answer
    for caller in callers.values():
        caller.close()
    for kind in ("as a user would", "off"):
        bench.stop(versions[kind])
    return {kind: (percentile(values, 50), percentile(values, 99), len(values)) for kind, values in times.items()}


def answer_to_entry(bench: Bench, project: str, tasks: list[dict], truth: dict[str, str], count: int) -> list[float]:
    """(b): AnswerReviewTask, then ListDatasetEntries until the entry is there; milliseconds each."""
    (train,) = [d["DatasetArn"] for d in bench.rekognition.describe_projects(ProjectNames=[project.split("/")[-2]])
                ["ProjectDescriptions"][0]["Datasets"] if d["DatasetType"] == "TRAIN"]
    waits = []
    for task in tasks[:count]:
        digest = task["Image"]["S3Object"]["Name"].rsplit("/", 1)[1].split(".")[0]
        started = time.perf_counter()
        bench.reviews.answer_review_task(HumanLoopName=task["HumanLoopName"], WorkerId="bench", Verdict="CORRECT",
                                         Labels=[{"Name": truth[digest]}])
        while not bench.rekognition.list_dataset_entries(DatasetArn=train, SourceRefContains=digest)["DatasetEntries"]:
            if time.perf_counter() - started > 30:
                raise AssertionError(f"the answer to {task['HumanLoopName']} never became an entry")
            time.sleep(0.005)
        waits.append((time.perf_counter() - started) * 1000)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--answers", type=int, default=25, help="K: reviewed images per v2")
    parser.add_argument("--budget", type=int, default=30, help="each version's training budget (s)")
    parser.add_argument("--rounds", type=int, default=5, help="passes over the stream for (a)")
    parser.add_argument("--no-value", action="store_true", help="(a) and (b) only: train no second versions")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        server = ServerProcess(Path(tmp) / "data").start()
        try:
            run(Bench(server, args.budget), args)
        finally:
            server.stop()
    print(f"\n(total {time.monotonic() - began:.0f} s)")


def run(bench: Bench, args: argparse.Namespace) -> None:
    every = flower_split(test_per_label=0, seed_per_label=0).stream
    bench.objects.put_many(BUCKET, [(f"{label}/{path.name}", path.read_bytes()) for label, path in every])
    truth = {digest_of(path): label for label, path in every}
    results = []
    capture = waits = None
    for seed in range(args.seeds):
        split = flower_split(test_per_label=10, seed_per_label=10, offset=seed * 13)
        name = f"loop{seed}"
        project = bench.project(name, split.seed, split.test)
        v1 = bench.train(project, "v1")
        v1_f1 = bench.f1(project, "v1")
        flow = bench.flow(seed)
        if seed == 0:
            capture = capture_cost(bench, project, v1, flow, split.stream, args.rounds)
        else:
            bench.rekognition.tag_resource(ResourceArn=v1, Tags={FLOW_TAG: flow})
            bench.start(project, v1)
            detect = SignedDetect(bench.server.endpoint)
            for _, path in split.stream:
                detect.call(SignedDetect.body(v1, path.read_bytes()))
            detect.close()
        queue = bench.queue(flow.rsplit("/", 1)[1], len(split.stream))
        bench.stop(v1)
        by_digest = {digest_of(path): (label, path) for label, path in split.stream}
        uncertain = [by_digest[t["Image"]["S3Object"]["Name"].rsplit("/", 1)[1].split(".")[0]] for t in queue[:args.answers]]
        chosen_at_random = random.Random(seed).sample(split.stream, args.answers)
        if seed == 0:
            waits = answer_to_entry(bench, project, queue, truth, min(len(queue), 50))
        if args.no_value:
            break
        variants = {"uncertain": uncertain, "random": chosen_at_random}
        trained = {kind: bench.project(f"{kind[:3]}{seed}", split.seed + items, split.test) for kind, items in variants.items()}
        for kind, arn in trained.items():
            bench.train(arn, "v2")
        f1 = {kind: bench.f1(arn, "v2") for kind, arn in trained.items()}
        results.append((seed, v1_f1, f1["uncertain"], f1["random"]))
        print(f"seed {seed}: v1 F1 {v1_f1:.3f}; v2 after {args.answers} answers: least confident first {f1['uncertain']:.3f}, "
              f"at random {f1['random']:.3f}", flush=True)

    print("\n=== bench-feedback ===")
    off50, off99, calls = capture["off"]
    print(f"(a) DetectCustomLabels, {calls} calls per version, interleaved; capture off: p50 {off50:.2f} ms, p99 {off99:.2f} ms")
    for kind in ("as a user would", "every answer"):
        p50, p99, _ = capture[kind]
        print(f"    capture on, {kind + ':':<17} p50 {p50:.2f} ms, p99 {p99:.2f} ms; added p50 {p50 - off50:+.2f} ms, "
              f"p99 {p99 - off99:+.2f} ms   (target: <= 2 ms at p99)")
    print(f"(b) answer -> entry visible in ListDatasetEntries, {len(waits)} answers: p50 {percentile(waits, 50):.1f} ms, "
          f"p95 {percentile(waits, 95):.1f} ms, max {max(waits):.1f} ms   (target: p95 <= 200 ms, embedded)")
    if not results:
        return
    print(f"(c) F1 on the fixed test set (50 images), seed set 10 per label, K = {args.answers} reviewed, budget {args.budget} s each:")
    print("    seed   v1      v2 least-confident-first   v2 random")
    for seed, v1_f1, uncertain, chosen in results:
        print(f"    {seed:<6} {v1_f1:.3f}   {uncertain:.3f}                      {chosen:.3f}")
    columns = list(zip(*results))[1:]
    spread = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
    print("    mean   " + "   ".join(f"{statistics.mean(c):.3f} (sd {spread(c):.3f})" for c in columns))


if __name__ == "__main__":
    main()
