"""A comparison report as the comparisons page shows it (pure).

The feedback service writes one report per challenger version it compared
with the live one: ``<S3KeyPrefix><version>/comparison.json`` in the
challenger's OutputConfig bucket, beside its evaluation files
(``report_key``). Both versions were scored on the same test images, so the
figures pair up: overall and per-label F1 and their deltas, McNemar's paired
test on per-image correctness, the verdict and why, and whether the
challenger was to take over the project's stable ARN.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from customlabels.arns import parse_arn

REPORT_NAME = "comparison.json"


def report_key(output_config: Mapping[str, Any] | None, version_name: str) -> tuple[str, str] | None:
    """(bucket, key) of the report a version would have, from its OutputConfig."""
    if not output_config or not output_config.get("S3Bucket"):
        return None
    return output_config["S3Bucket"], f"{output_config.get('S3KeyPrefix') or ''}{version_name}/{REPORT_NAME}"


def _name(arn: str | None) -> str | None:
    parsed = parse_arn(arn or "")
    return parsed.version_name if parsed else arn


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def report_view(report: Mapping[str, Any]) -> dict[str, Any]:
    overall = report.get("Overall") or {}
    test = report.get("McNemar") or {}
    tolerance = report.get("Tolerance")
    labels = sorted(report.get("Labels") or [], key=lambda row: (row.get("Delta", 0.0), row.get("Label", "")))
    location = report.get("Report") or {}
    return {
        "live": _name(report.get("LiveVersionArn")),
        "challenger": _name(report.get("ChallengerVersionArn")),
        "created": _moment(report.get("CreationTime")),
        "test_images": report.get("TestImages"),
        "scored_on": report.get("LiveScoredOn"),
        "live_f1": overall.get("LiveF1"),
        "challenger_f1": overall.get("ChallengerF1"),
        "delta": overall.get("Delta"),
        "live_accuracy": overall.get("LiveAccuracy"),
        "challenger_accuracy": overall.get("ChallengerAccuracy"),
        "labels": [{"label": row.get("Label"), "live": row.get("LiveF1"), "challenger": row.get("ChallengerF1"),
                    "delta": row.get("Delta"),
                    "dropped": tolerance is not None and row.get("Delta") is not None and row["Delta"] < -tolerance}
                   for row in labels],
        "b": test.get("LiveRightChallengerWrong"),
        "c": test.get("LiveWrongChallengerRight"),
        "p": test.get("PValue"),
        "method": test.get("Method"),
        "alpha": test.get("Alpha"),
        "tolerance": tolerance,
        "verdict": report.get("Verdict"),
        "reason": report.get("Reason"),
        "promote": bool(report.get("Promote")),
        "promote_reason": report.get("PromoteReason"),
        "uri": f"s3://{location['bucket']}/{location['key']}" if location.get("bucket") else None,
    }
