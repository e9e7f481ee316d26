"""The training results summary file, ``EvaluationSummary-<project>-<version>.json``.

The shape follows the reference's example file (im-summary-file-api.md):
``AggregatedEvaluationResults`` holds Precision, Recall and F1Score directly.
Our extensions sit beside the reference's fields there: AveragePrecision and
AverageRecall for detectors, ExpectedCalibrationError for classifiers
(``calibration_error.py``).
The reference's format listing (im-summary-file.md) nests them one level
deeper, in ``AggregatedEvaluationResults.Metrics``; the example output, and
the reference's own confusion-matrix script that reads
``summary['AggregatedEvaluationResults']['ConfusionMatrix']``, do not, so
neither do we.
"""
from __future__ import annotations

from datetime import UTC, datetime

from .classification import ClassificationEvaluation
from .detection import DetectionEvaluation
from .metrics import LabelMetrics

SUMMARY_VERSION = 1


def summary_file_name(project_name: str, version_name: str) -> str:
    return f"EvaluationSummary-{project_name}-{version_name}.json"


def reference_timestamp(moment: datetime) -> str:
    """``2019-11-21T07:30:23.910943``: UTC, no zone suffix, always microseconds, as the reference writes it.

    A naive datetime is taken to be UTC already.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def summary_file(
    evaluation: ClassificationEvaluation | DetectionEvaluation,
    *,
    project_version_arn: str,
    evaluation_end: datetime,
    number_of_training_images: int,
) -> dict:
    """The summary file's content, ready for ``json.dumps``."""
    return {
        "Version": SUMMARY_VERSION,
        "EvaluationDetails": {
            "ProjectVersionArn": project_version_arn,
            "EvaluationEndTimestamp": reference_timestamp(evaluation_end),
            "Labels": sorted(evaluation.labels),
            "NumberOfTrainingImages": int(number_of_training_images),
            "NumberOfTestingImages": evaluation.number_of_testing_images,
        },
        "AggregatedEvaluationResults": _aggregated(evaluation),
        "LabelEvaluationResults": [_label_result(m) for m in sorted_by_f1(evaluation.metrics.values())],
    }


def sorted_by_f1(metrics) -> list[LabelMetrics]:
    """Best F1 first (the reference: "The labels are sorted by the F1 score"; its example is descending), then by name."""
    return sorted(metrics, key=lambda m: (-m.f1, m.label))


def _aggregated(evaluation) -> dict:
    aggregate = evaluation.aggregate
    result = {"Precision": aggregate.precision, "Recall": aggregate.recall, "F1Score": aggregate.f1}
    if isinstance(evaluation, DetectionEvaluation):
        result["AveragePrecision"] = aggregate.average_precision
        result["AverageRecall"] = aggregate.average_recall
    else:
        result["ExpectedCalibrationError"] = evaluation.calibration_error
        if evaluation.confusion_matrix is not None:
            result["ConfusionMatrix"] = evaluation.confusion_matrix
    return result


def _label_result(metrics: LabelMetrics) -> dict:
    return {
        "Label": metrics.label,
        "NumberOfTestingImages": metrics.testing_images,
        "Metrics": {
            "Threshold": metrics.threshold,
            "Precision": metrics.precision,
            "Recall": metrics.recall,
            "F1Score": metrics.f1,
        },
    }
