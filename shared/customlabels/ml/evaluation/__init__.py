"""Model evaluation as the reference defines it, and the files it writes (pure: numpy only, no I/O).

Typical use::

    ev = evaluate_classification(labels, true_labels, scores)           # or
    ev = evaluate_detection(labels, true_boxes, predicted_boxes)       # boxes in pixels
    ev.f1_score                                                        # EvaluationResult.F1Score
    summary = summary_file(ev, project_version_arn=arn, evaluation_end=now,
                           number_of_training_images=n)                # EvaluationSummary-<p>-<v>.json
    snapshot = evaluation_manifest_lines(test_lines, ev, creation_date=now)
    manifest_summary(training_results, testing_results)                # manifest_summary.json

Definitions (reference passages quoted where they decided something):

* **Assumed threshold**, per label: the score threshold giving the label its
  best F1 on the test set ("calculated based on the best F1 score achieved on
  the test dataset"). Candidates are the label's distinct scores; a
  prediction counts when ``score >= threshold``; equal F1: the higher
  threshold. A label never predicted gets 1.0.
* **Precision, recall, F1** of a label are at its threshold; classification
  counts images, detection counts boxes ("all metrics are calculated over
  each bounding box"). F1 is 2PR/(P+R) (bit-for-bit the reference's example).
* **Aggregates**: plain means over the labels that have ground truth in the
  test set (the reference's example summary is exactly the mean of its two
  labels, for Precision, Recall and F1Score).
* **Detection**: greedy matching by descending score at IoU >= 0.5 (the
  reference documents no IoU); AveragePrecision is COCO's 101-point
  interpolated AP at IoU 0.5 and AverageRecall the recall with every
  prediction kept, each averaged over labels (mAP@0.5, mAR@0.5).
* **Expected calibration error** (classifiers, our extension): how far the
  scores are from how often they are right (``calibration_error.py``).
* **Confusion matrix** (multi-class only): argmax predictions, each value the
  share of the ground-truth label's images, so each ground-truth label sums
  to 1 (the reference's Rooms table).

See each module for the details and the edge cases.
"""
from .calibration_error import calibrated_floor, expected_calibration_error
from .classification import ClassificationEvaluation, confusion_matrix, evaluate_classification
from .detection import IOU_THRESHOLD, Box, DetectionEvaluation, DetectionImage, evaluate_detection, iou, match_image
from .manifest_summary import (
    IGNORED,
    IMAGE_LEVEL_LABELS,
    INVALID,
    NOT_DETERMINED,
    OBJECT_LOCALIZATION,
    VALID,
    LineResult,
    code_counts,
    line_result,
    manifest_summary,
    rejected_line_result,
)
from .metrics import NO_PREDICTION_THRESHOLD, AggregateMetrics, LabelMetrics, average_precision, pr_curve
from .snapshot import EVALUATION_ATTRIBUTE, EVALUATION_JOB_NAME, evaluation_manifest_lines
from .summary import reference_timestamp, summary_file, summary_file_name

__all__ = [
    "IOU_THRESHOLD", "NO_PREDICTION_THRESHOLD", "EVALUATION_ATTRIBUTE", "EVALUATION_JOB_NAME",
    "VALID", "INVALID", "IGNORED", "IMAGE_LEVEL_LABELS", "OBJECT_LOCALIZATION", "NOT_DETERMINED",
    "AggregateMetrics", "Box", "ClassificationEvaluation", "DetectionEvaluation", "DetectionImage",
    "LabelMetrics", "LineResult",
    "average_precision", "calibrated_floor", "code_counts", "confusion_matrix", "evaluate_classification",
    "evaluate_detection", "expected_calibration_error",
    "evaluation_manifest_lines", "iou", "line_result", "manifest_summary", "match_image", "pr_curve",
    "reference_timestamp", "rejected_line_result", "summary_file", "summary_file_name",
]
