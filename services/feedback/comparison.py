"""Comparing a challenger with the live version on the same test images.

Both versions' exported artifacts (the files hosting serves) are scored now
on the challenger's test set, the TEST dataset as it was trained against, so
the live version is re-scored whenever the test set changed since it was
trained and the two are always paired on identical images (``scoring``).

The verdict (``verdict``):

* **worse**: the challenger is right on significantly fewer images
  (McNemar, b > c, p <= ALPHA), or some label's F1 dropped by more than the
  tolerance (tag ``customlabels:promote-max-label-f1-drop``, default 0.05);
* **better**: right on significantly more images (c > b, p < ALPHA) and no
  label dropped beyond the tolerance;
* **not worse**: neither.

A challenger is promoted when the project's tag ``customlabels:auto-promote``
is ``true`` and the verdict is not "worse". The report (overall and per-label
F1 and their deltas, the paired test, the verdict and why) is written beside
the challenger's evaluation files: ``<prefix><version>/comparison.json`` in its
OutputConfig bucket.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from customlabels import clock, tags
from customlabels.ml.runtime.artifact import (
    CARD_NAME,
    MODELS_BUCKET,
    ONNX_NAME,
    artifact_prefix,
)
from customlabels.ports.blobs import BlobStore, get_many

from services.feedback.scoring import Case, Scores, cases_from_lines, score
from services.feedback.statistics import McNemar, mcnemar

ALPHA = 0.05
DEFAULT_TOLERANCE = 0.05
TOLERANCE_TAG = tags.PROMOTE_MAX_LABEL_F1_DROP
AUTO_PROMOTE_TAG = tags.AUTO_PROMOTE
BATCH = 32


@dataclass(frozen=True)
class Verdict:
    verdict: str  # better | not worse | worse
    reason: str
    test: McNemar
    label_deltas: dict[str, float]  # challenger F1 - live F1, per label the test set has


def verdict(live: Scores, challenger: Scores, tolerance: float) -> Verdict:
    """The decision rule above, on two scorings of the same images."""
    b = sum(1 for a, c in zip(live.correct, challenger.correct, strict=True) if a and not c)
    c = sum(1 for a, c in zip(live.correct, challenger.correct, strict=True) if c and not a)
    test = mcnemar(b, c)
    labels = sorted(live.truth_labels | challenger.truth_labels)
    deltas = {label: round(challenger.f1(label) - live.f1(label), 6) for label in labels}
    dropped = {label: d for label, d in deltas.items() if d < -tolerance}
    paired = f"b = {b} images the live version got right and the challenger wrong, c = {c} the other way, p = {test.p_value:.4g} ({test.method})"
    if b > c and test.p_value <= ALPHA:
        return Verdict("worse", f"significantly more test images wrong: {paired}", test, deltas)
    if dropped:
        named = ", ".join(f"{label} {d:+.3f}" for label, d in sorted(dropped.items()))
        return Verdict("worse", f"F1 dropped by more than {tolerance:g} for {named} ({paired})", test, deltas)
    if c > b and test.p_value < ALPHA:
        return Verdict("better", f"significantly more test images right: {paired}", test, deltas)
    return Verdict("not worse", f"no significant difference and no label's F1 down by more than {tolerance:g}: {paired}",
                   test, deltas)


class Comparisons:
    def __init__(self, blobs: BlobStore):
        self.blobs = blobs

    async def compare(self, *, project_arn: str, live_arn: str, challenger: dict[str, Any],
                      project_tags: dict[str, str]) -> dict[str, Any]:
        """Score both on the challenger's test set; write the report. ``challenger``: its DescribeProjectVersions item.
        Returns the report (``Verdict``, ``Promote``, ``Report`` location among its members)."""
        lines = await self._test_lines(challenger)
        with tempfile.TemporaryDirectory(prefix="customlabels-compare-") as folder:
            live_model = await self._scorer(live_arn, Path(folder) / "live")
            challenger_model = await self._scorer(challenger["ProjectVersionArn"], Path(folder) / "challenger")
        cases = cases_from_lines(lines, challenger_model.task)
        images = await get_many(self.blobs, [(c.bucket, c.key) for c in cases])
        cases, images = [c for c, i in zip(cases, images) if i is not None], [i for i in images if i is not None]
        live_scores = await live_model.score(cases, images)
        challenger_scores = await challenger_model.score(cases, images)
        tolerance = _tolerance(project_tags)
        decided = verdict(live_scores, challenger_scores, tolerance)
        wanted = project_tags.get(AUTO_PROMOTE_TAG, "").lower() == "true"
        promote = wanted and decided.verdict != "worse"
        if promote:
            why = f"{AUTO_PROMOTE_TAG} is true and the challenger is {decided.verdict}"
        elif wanted:
            why = "the challenger is worse: the live version stays"
        else:
            why = f"the project's tag {AUTO_PROMOTE_TAG} is not true: promote by hand (StartProjectVersion) if wanted"
        output = challenger["OutputConfig"]
        name = challenger["ProjectVersionArn"].split("/version/", 1)[1].rsplit("/", 1)[0]
        location = {"bucket": output["S3Bucket"], "key": f"{output.get('S3KeyPrefix') or ''}{name}/comparison.json"}
        report = {
            "ProjectArn": project_arn,
            "LiveVersionArn": live_arn,
            "ChallengerVersionArn": challenger["ProjectVersionArn"],
            "CreationTime": clock.now().isoformat(),
            "TestImages": len(cases),
            "LiveScoredOn": "the challenger's test set, scored now with the live version's served artifact",
            "Overall": {"LiveF1": round(live_scores.overall_f1(), 6), "ChallengerF1": round(challenger_scores.overall_f1(), 6),
                        "Delta": round(challenger_scores.overall_f1() - live_scores.overall_f1(), 6),
                        "LiveAccuracy": _share(live_scores.correct), "ChallengerAccuracy": _share(challenger_scores.correct)},
            "Labels": [{"Label": label, "LiveF1": round(live_scores.f1(label), 6),
                        "ChallengerF1": round(challenger_scores.f1(label), 6), "Delta": delta}
                       for label, delta in decided.label_deltas.items()],
            "McNemar": {"LiveRightChallengerWrong": decided.test.b, "LiveWrongChallengerRight": decided.test.c,
                        "PValue": decided.test.p_value, "Method": decided.test.method, "Alpha": ALPHA},
            "Tolerance": tolerance,
            "Verdict": decided.verdict,
            "Reason": decided.reason,
            "Promote": promote,
            "PromoteReason": why,
            "Report": location,
        }
        await self.blobs.ensure_bucket(location["bucket"])
        await self.blobs.put(location["bucket"], location["key"], json.dumps(report, indent=2).encode())
        return report

    async def _test_lines(self, challenger: dict[str, Any]) -> list[dict[str, Any]]:
        testing = challenger.get("TestingDataResult") or {}
        for part in ("Output", "Input"):
            assets = (testing.get(part) or {}).get("Assets") or []
            if assets:
                s3 = assets[0]["GroundTruthManifest"]["S3Object"]
                raw = await self.blobs.get(s3["Bucket"], s3["Name"])
                return [json.loads(line) for line in raw.splitlines() if line.strip()]
        raise ValueError(f"version {challenger['ProjectVersionArn']} has no test manifest to compare on")

    async def _scorer(self, version_arn: str, folder: Path) -> "_Scorer":
        """The version's artifact (the file hosting serves), loaded; ``folder`` may go once this returns."""
        folder.mkdir()
        prefix = artifact_prefix(version_arn)
        for name in (ONNX_NAME, CARD_NAME):
            (folder / name).write_bytes(await self.blobs.get(MODELS_BUCKET, prefix + name))
        return await asyncio.to_thread(_Scorer.load, folder)


class _Scorer:
    """One version's model, loaded to score test images at its own thresholds."""

    def __init__(self, model):
        self.model = model
        self.task = model.card.task

    @classmethod
    def load(cls, folder: Path) -> "_Scorer":
        from customlabels.ml.runtime.served import ServedModel

        return cls(ServedModel.load(folder))

    async def score(self, cases: list[Case], images: list[bytes]) -> Scores:
        def run() -> Scores:
            predictions = []
            for start in range(0, len(images), BATCH):
                predictions.extend(self.model.predict(images[start:start + BATCH]))
            thresholds = {label: self.model.card.threshold(label) for label in self.model.card.labels}
            return score(self.task, cases, predictions, thresholds)

        return await asyncio.to_thread(run)


def _share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 6) if flags else 0.0


def _tolerance(project_tags: dict[str, str]) -> float:
    raw = project_tags.get(TOLERANCE_TAG)
    try:
        value = float(raw) if raw is not None else DEFAULT_TOLERANCE
    except ValueError:
        value = DEFAULT_TOLERANCE
    return min(max(value, 0.0), 1.0)
