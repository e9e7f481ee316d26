"""``manifest_summary.json``: how many lines of each split training could use, and why not the others.

Format as tm-debugging-summary.md gives it::

    {"statistics": {"training": {...}, "testing": {...}}, "errors": [{"code", "message"}]}

each split with ``use_case``, ``total_json_lines``, ``valid_json_lines``,
``invalid_json_lines``, ``ignored_json_lines``, ``error_json_line_indices``
and ``errors``. The reference's ``errors`` objects are ``{code, message}``
with no count; per-code counts are available from :func:`code_counts` for
whoever needs them (a StatusMessage, logs).

* Line numbers in ``error_json_line_indices`` are 1-based: the reference's
  example lists line 15 of a 15-line testing manifest.
* A line is listed there when it has any ``ERROR_*`` code, even if it stays
  usable (one bad box among good ones); warnings alone don't list it.
* ``errors`` of a split are manifest content errors (the whole split), not
  per-line ones; ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST is added here when
  more than 20 % of a split's lines are invalid. Top-level ``errors`` span both
  splits (ERROR_INSUFFICIENT_LABEL_OVERLAP, ...) and come from the caller.
* ``use_case`` is IMAGE_LEVEL_LABELS or OBJECT_LOCALIZATION when the valid
  lines of both splits agree on it, else NOT_DETERMINED; also NOT_DETERMINED
  when there is a content error anywhere, as in the reference's example (its
  training split fails and both splits say NOT_DETERMINED). The caller can
  impose one (a mixed dataset the trainer resolved).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from customlabels.manifests import codes as c
from customlabels.manifests import invalid_rows_problem, line_codes
from customlabels.manifests.lines import CLASSIFICATION, DETECTION, RejectedLine

VALID, INVALID, IGNORED = "valid", "invalid", "ignored"

IMAGE_LEVEL_LABELS = "IMAGE_LEVEL_LABELS"
OBJECT_LOCALIZATION = "OBJECT_LOCALIZATION"
NOT_DETERMINED = "NOT_DETERMINED"
_USE_CASES = {CLASSIFICATION: IMAGE_LEVEL_LABELS, DETECTION: OBJECT_LOCALIZATION}

_UNUSABLE_CODES = c.LINE_FATAL_CODES | c.TERMINAL_LINE_CODES


@dataclass(frozen=True)
class LineResult:
    """What validation made of one manifest line."""
    line_number: int              # 1-based
    status: str                   # VALID, INVALID or IGNORED
    codes: tuple[str, ...] = ()   # every error and warning code of the line
    task: str | None = None       # manifests.CLASSIFICATION / DETECTION / MIXED, for valid lines

    @property
    def has_errors(self) -> bool:
        return any(code.startswith("ERROR_") for code in self.codes)


def line_result(line_number: int, line: dict, labels: Collection[str], task: str | None = None) -> LineResult:
    """The result of a stored entry: its line (errors embedded) and its usable labels.

    Invalid when the line carries a code that makes it unusable
    (``manifests.LINE_FATAL_CODES``); otherwise valid when it has a usable
    label, ignored when it has none (unlabeled, WARNING_NO_ANNOTATIONS).
    """
    codes = tuple(line_codes(line))
    if any(code in _UNUSABLE_CODES for code in codes):
        return LineResult(line_number, INVALID, codes, None)
    if labels:
        return LineResult(line_number, VALID, codes, task)
    return LineResult(line_number, IGNORED, codes, None)


def rejected_line_result(rejected: RejectedLine) -> LineResult:
    """A line that failed a terminal check (not JSON, no source-ref, ...)."""
    return LineResult(rejected.line_number, INVALID, (rejected.code,), None)


def code_counts(results: Iterable[LineResult]) -> dict[str, int]:
    """How often each code occurs, sorted by code."""
    return dict(sorted(Counter(code for r in results for code in r.codes).items()))


def split_statistics(results: Sequence[LineResult], use_case: str, errors: Sequence[dict] = ()) -> dict:
    """One split's entry of ``statistics``."""
    counts = Counter(r.status for r in results)
    return {
        "use_case": use_case,
        "total_json_lines": len(results),
        "valid_json_lines": counts[VALID],
        "invalid_json_lines": counts[INVALID],
        "ignored_json_lines": counts[IGNORED],
        "error_json_line_indices": sorted(r.line_number for r in results if r.has_errors),
        "errors": list(errors),
    }


def manifest_summary(
    training: Sequence[LineResult],
    testing: Sequence[LineResult],
    *,
    training_errors: Sequence[dict] = (),
    testing_errors: Sequence[dict] = (),
    errors: Sequence[dict] = (),
    use_case: str | None = None,
) -> dict:
    """The content of ``manifest_summary.json``, ready for ``json.dumps``.

    ``*_errors``: ``{"code", "message"}`` objects (``manifests.problem``) for
    content errors the caller found; the too-many-invalid-rows one is added
    here when it applies.
    """
    training_errors = _with_invalid_rows(training, training_errors)
    testing_errors = _with_invalid_rows(testing, testing_errors)
    if use_case is None:
        failed = bool(training_errors or testing_errors or errors)
        use_case = NOT_DETERMINED if failed else _use_case([*training, *testing])
    return {
        "statistics": {
            "training": split_statistics(training, use_case, training_errors),
            "testing": split_statistics(testing, use_case, testing_errors),
        },
        "errors": list(errors),
    }


def _with_invalid_rows(results: Sequence[LineResult], errors: Sequence[dict]) -> list[dict]:
    errors = list(errors)
    invalid = sum(r.status == INVALID for r in results)
    problem = invalid_rows_problem(invalid, len(results))
    if problem is not None and all(e.get("code") != problem["code"] for e in errors):
        errors.append(problem)
    return errors


def _use_case(results: Sequence[LineResult]) -> str:
    tasks = {r.task for r in results if r.status == VALID}
    if len(tasks) == 1:
        return _USE_CASES.get(next(iter(tasks)), NOT_DETERMINED)
    return NOT_DETERMINED
