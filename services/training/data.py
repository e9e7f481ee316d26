"""From dataset entries to what a model trains and is tested on, or a reason it can't be.

    data = prepare(training_lines, testing_lines)   # raises DataProblem with the manifest summary
    data.task, data.labels, data.training.examples, data.testing.examples

Rules (the reference's where it has them; ours, documented, where it is silent):

* **Usable lines**: a stored line with an error that makes it unusable
  (invalid image, no valid label attribute, too many boxes or labels) is
  *invalid*; a line with no label is *ignored*; the rest are *valid*.
  ``manifest_summary.json`` counts them per split.
* **Task from the labels**: a training line with bounding boxes (or an
  object-detection attribute with no boxes: a checked image with nothing on
  it) counts for object localization, a line with image-level labels only for
  classification. The larger group decides (a tie goes to localization, whose
  boxes say more); **a dataset mixing both** trains the majority kind, and each
  line of the other kind is *ignored* with ``WARNING_IGNORED_FOR_USE_CASE`` in
  the validation manifest and counted in the summary, so nothing is dropped
  silently. A mixed line (image labels and boxes) gives the chosen kind's part.
  Classification is multi-label as soon as one training image has two labels.
* **Labels**: those of the valid training lines; classification needs 2,
  localization 1 (ERROR_MANIFEST_TOO_FEW_LABELS), at most 250.
* **Testing**: the TEST dataset when the project has one; its labels must
  overlap the training labels by at least 50 % (ERROR_INSUFFICIENT_LABEL_OVERLAP)
  and it must share no image (``source-ref``) with training
  (ERROR_IMAGES_IN_TRAINING_AND_TESTING, the shared lines listed). Test labels
  the model never saw are left out of its ground truth. A label whose every
  training line is invalid fails training (ERROR_LABEL_WITHOUT_TRAINING_IMAGES,
  its lines named) rather than training a model that silently lacks it. With no TEST dataset,
  20 % of the training images are split off, stratified by each image's rarest
  label, with a seed so a retry splits the same way.
* More than 20 % invalid lines in a split fails it
  (ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST), as an import does.
* **Unlabeled images** (a training line with no label attribute at all: what
  uploads and event producers add) are *ignored* in the summary, as the
  reference counts them, but a classifier learns from them too
  (``TrainingData.unlabeled``: up to ``MAX_UNLABELED`` of them, a seeded
  sample beyond that). They come from the TRAIN dataset only, so they never
  reach the test set or the evaluation; a detector does not use them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from customlabels.manifests import MAX_LABELS, codes, line_codes, problem, stored_line_targets
from customlabels.manifests.targets import declared_labels, is_localization
from customlabels.manifests.lines import SOURCE_REF
from customlabels.ml.runtime.onnx_file import DETECTION
from customlabels.ports.blobs import split_s3_uri
from customlabels.ml.evaluation import (
    IGNORED,
    IMAGE_LEVEL_LABELS,
    INVALID,
    OBJECT_LOCALIZATION,
    VALID,
    LineResult,
    line_result,
    manifest_summary,
)

TEST_FRACTION = 0.2
MIN_LABEL_OVERLAP = 0.5
MAX_UNLABELED = 1000  # unlabeled training images a classifier gets (fetched and decoded within its budget)


@dataclass(frozen=True)
class Example:
    """One usable image of a split."""

    index: int  # its line's position in the split (0-based)
    bucket: str
    key: str
    image_labels: tuple[str, ...]
    boxes: tuple[tuple[str, float, float, float, float], ...]  # label, left, top, width, height in pixels
    image_size: tuple[float, float] | None  # what the boxes are measured in


@dataclass
class Split:
    lines: list[dict]  # as stored (validation report embedded)
    results: list[LineResult] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    unlabeled: list[Example] = field(default_factory=list)  # lines with no label attribute (no labels, no boxes)

    def validation_lines(self, use_case: str) -> list[dict]:
        """The lines with every problem embedded, our own warnings included (the validation manifest)."""
        warning = problem(codes.WARNING_IGNORED_FOR_USE_CASE, use_case=use_case)
        out = []
        for line, result in zip(self.lines, self.results):
            if codes.WARNING_IGNORED_FOR_USE_CASE in result.codes:
                line = {**line, "warnings": [*line.get("warnings", []), warning]}
            out.append(line)
        return out


@dataclass
class TrainingData:
    task: str  # multiclass | multilabel | detection
    labels: list[str]
    training: Split
    testing: Split
    auto_split: bool
    seed: int = 0

    @property
    def use_case(self) -> str:
        return OBJECT_LOCALIZATION if self.task == DETECTION else IMAGE_LEVEL_LABELS

    @property
    def unlabeled(self) -> list[Example]:
        """The training split's unlabeled images a classifier learns from (none for a detector): at most
        ``MAX_UNLABELED``, a sample seeded like the split. Never a testing line."""
        pool = self.training.unlabeled if self.task != DETECTION else []
        if len(pool) <= MAX_UNLABELED:
            return list(pool)
        chosen = np.random.default_rng(self.seed).choice(len(pool), MAX_UNLABELED, replace=False)
        return [pool[i] for i in sorted(chosen)]

    def summary(self) -> dict:
        return manifest_summary(self.training.results, self.testing.results, use_case=self.use_case)


class DataProblem(Exception):
    """Training can't start: ``message`` for StatusMessage, ``summary`` for manifest_summary.json."""

    def __init__(self, message: str, summary: dict, training: Split, testing: Split | None = None):
        super().__init__(message)
        self.message = message
        self.summary = summary
        self.training = training
        self.testing = testing


def prepare(training_lines: Sequence[dict], testing_lines: Sequence[dict] | None, *, seed: int = 0) -> TrainingData:
    training = Split(list(training_lines))
    entries = [stored_line_targets(line, n) for n, line in enumerate(training.lines, 1)]
    task = _choose_task(entries)
    training.results, training.examples, training.unlabeled = _classify_lines(training.lines, entries, task, known=None)
    if task != DETECTION and any(len(e.image_labels) > 1 for e in training.examples):
        task = "multilabel"
    labels = sorted({label for e in training.examples for label in _example_labels(e, task)})
    _check_training(training, labels, task)  # on every training line, before any is split off

    if testing_lines is None:
        training, testing = _split_off(training, labels, task, seed)
        return TrainingData(task, labels, training, testing, auto_split=True, seed=seed)
    testing = Split(list(testing_lines))
    test_entries = [stored_line_targets(line, n) for n, line in enumerate(testing.lines, 1)]
    testing.results, testing.examples, _ = _classify_lines(testing.lines, test_entries, task, known=set(labels))
    data = TrainingData(task, labels, training, testing, auto_split=False, seed=seed)
    _check_testing(data, test_entries)
    return data


# --- the task and the lines ----------------------------------------------------------
def _choose_task(entries) -> str:
    detection = sum(1 for e in entries if e is not None and e.task in ("detection", "mixed") and is_localization(e))
    classification = sum(1 for e in entries if e is not None and e.image_labels and not is_localization(e))
    return DETECTION if detection and detection >= classification else "multiclass"


def _classify_lines(lines, entries, task: str, known: set[str] | None
                    ) -> tuple[list[LineResult], list[Example], list[Example]]:
    """Per line its result; the usable lines' examples (labels outside ``known`` dropped); the unlabeled lines'."""
    results, examples, unlabeled = [], [], []
    for index, (line, entry) in enumerate(zip(lines, entries)):
        number = index + 1
        if entry is None:
            results.append(line_result(number, line, ()))  # INVALID (or a rejected form)
            continue
        wanted = is_localization(entry) if task == DETECTION else bool(entry.image_labels)
        if not wanted:
            result = line_result(number, line, entry.labels, entry.task)
            if result.status == VALID:  # usable, but for the other kind of model
                result = LineResult(number, IGNORED, (*result.codes, codes.WARNING_IGNORED_FOR_USE_CASE))
            elif not entry.labeled:  # no label attribute at all: an image nobody has labeled yet
                unlabeled.append(Example(index, *split_s3_uri(line[SOURCE_REF]), (), (), None))
            results.append(result)
            continue
        bucket, key = split_s3_uri(line[SOURCE_REF])
        boxes = entry.boxes if task == DETECTION else ()
        image_labels = entry.image_labels if task != DETECTION else ()
        if known is not None:
            boxes = tuple(b for b in boxes if b[0] in known)
            image_labels = tuple(label for label in image_labels if label in known)
        # A detection negative (checked, nothing found) is a valid training image too.
        results.append(LineResult(number, VALID, tuple(line_codes(line)), entry.task))
        examples.append(Example(index, bucket, key, image_labels, boxes, entry.image_size))
    return results, examples, unlabeled


def _example_labels(example: Example, task: str) -> set[str]:
    return {b[0] for b in example.boxes} if task == DETECTION else set(example.image_labels)


def _split_off(training: Split, labels: list[str], task: str, seed: int) -> tuple[Split, Split]:
    """20 % of the usable training images become the test set, stratified by label."""
    from customlabels.ml.splits import stratified_holdout

    column = {label: i for i, label in enumerate(labels)}
    targets = np.zeros((len(training.examples), max(1, len(labels))), dtype=np.float32)
    for row, example in enumerate(training.examples):
        for label in _example_labels(example, task):
            targets[row, column[label]] = 1
    chosen = set(stratified_holdout(targets, TEST_FRACTION, np.random.default_rng(seed)).tolist())
    test_lines = {training.examples[i].index for i in chosen}
    keep = [i for i in range(len(training.lines)) if i not in test_lines]
    moved = sorted(test_lines)

    def subset(indices: list[int]) -> Split:
        position = {old: new for new, old in enumerate(indices)}
        split = Split([training.lines[i] for i in indices])
        split.results = [_renumbered(training.results[i], position[i] + 1) for i in indices]
        split.examples, split.unlabeled = ([Example(position[e.index], e.bucket, e.key, e.image_labels, e.boxes,
                                                    e.image_size) for e in examples if e.index in position]
                                            for examples in (training.examples, training.unlabeled))
        return split

    return subset(keep), subset(moved)


def _renumbered(result: LineResult, number: int) -> LineResult:
    return LineResult(number, result.status, result.codes, result.task)


# --- checks ---------------------------------------------------------------------------
def _fail(message: str, training: Split, testing: Split | None, *, training_errors=(), testing_errors=(), errors=()):
    summary = manifest_summary(training.results, testing.results if testing else [], training_errors=training_errors,
                               testing_errors=testing_errors, errors=errors)
    raise DataProblem(message, summary, training, testing)


def _too_many_invalid(name: str, split: Split, training: Split, testing: Split | None) -> None:
    invalid = sum(1 for r in split.results if r.status == INVALID)
    if split.results and invalid * 5 > len(split.results):
        _fail(f"{invalid} of the {len(split.results)} {name} lines are invalid (more than 20 %): "
              f"see the {name} validation manifest for each line's errors", training, testing)


def _check_training(training: Split, labels: list[str], task: str) -> None:
    _too_many_invalid("training", training, training, None)
    if not training.examples:
        _fail("the training dataset has no usable labeled images: label some images, or fix the lines "
              "listed in the training validation manifest", training, None,
              training_errors=[problem(codes.ERROR_NO_VALID_IMAGES)])
    minimum = 1 if task == DETECTION else 2
    if len(labels) < minimum:
        kind = "an object-localization" if task == DETECTION else "a classification"
        _fail(f"{kind} model needs at least {minimum} labels; the training dataset has {len(labels)} "
              f"({', '.join(labels) or 'none'})", training, None,
              training_errors=[problem(codes.ERROR_MANIFEST_TOO_FEW_LABELS)])
    if len(labels) > MAX_LABELS:
        _fail(f"the training dataset has {len(labels)} labels; at most {MAX_LABELS} are allowed", training, None,
              training_errors=[problem(codes.ERROR_MANIFEST_TOO_MANY_LABELS)])
    invalid_lines: dict[str, list[int]] = {}
    for line, result in zip(training.lines, training.results):
        if result.status == INVALID:
            for label in declared_labels(line) - set(labels):
                invalid_lines.setdefault(label, []).append(result.line_number)
    if invalid_lines:
        label, numbers = sorted(invalid_lines.items())[0]
        _fail(f"label {label!r} has no usable training images: its lines ({', '.join(map(str, numbers[:10]))}) are "
              "invalid; fix them (see the training validation manifest) or remove the label", training, None,
              training_errors=[problem(codes.ERROR_LABEL_WITHOUT_TRAINING_IMAGES, label=label)])


def _check_testing(data: TrainingData, test_entries) -> None:
    training, testing = data.training, data.testing
    _too_many_invalid("testing", testing, training, testing)
    shared = sorted({line[SOURCE_REF] for line in training.lines} & {line[SOURCE_REF] for line in testing.lines})
    if shared:
        _fail(f"{len(shared)} image(s) are in both the training and the testing dataset, e.g. {shared[0]}: "
              "remove them from one of the two", training, testing,
              errors=[problem(codes.ERROR_IMAGES_IN_TRAINING_AND_TESTING)])
    test_labels = {label for e in test_entries if e is not None
                   for label in ({b[0] for b in e.boxes} if data.task == DETECTION else set(e.image_labels))}
    if test_labels:
        overlap = len(test_labels & set(data.labels)) / len(test_labels)
        if overlap < MIN_LABEL_OVERLAP:
            _fail(f"only {overlap:.0%} of the testing labels are training labels (at least 50 % needed): "
                  f"testing has {', '.join(sorted(test_labels - set(data.labels))[:5])} that training lacks",
                  training, testing, errors=[problem(codes.ERROR_INSUFFICIENT_LABEL_OVERLAP, percent=50)])
    if not testing.examples:
        _fail("the testing dataset has no usable labeled images of the training labels: add some, or delete the "
              "testing dataset to split 20 % off the training images", training, testing,
              testing_errors=[problem(codes.ERROR_NO_VALID_IMAGES)])
