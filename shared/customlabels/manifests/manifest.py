"""Manifest-level rules: splitting, de-duplication, counts, and the limits.

The reference counts every line of a manifest, blank and invalid ones
included, and fails an import only when MORE than 20 % of them are invalid,
whatever mix of errors made them so. Lines that are valid but carry no usable
label (unlabeled images, WARNING_NO_ANNOTATIONS) are "ignored": they count as
lines, not as invalid ones.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from . import codes as c
from .limits import MAX_INVALID_FRACTION_PERCENT, MAX_LABELS, MAX_LINES, MAX_MANIFEST_BYTES
from .lines import Entry, RejectedLine, line_problems

T = TypeVar("T")


def iter_manifest_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, line)`` for each line of a manifest, 1-based.

    The final line break ends the last line and does not start a new one;
    every other empty line is a line (and an invalid one, once parsed).
    """
    start, number, size = 0, 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        yield number, data[start:end]
        start = end + 1


def dedupe_by_source_ref(items: Iterable[T]) -> tuple[list[T], int]:
    """Keep the LAST item per ``source_ref`` (later lines win); also say how many were superseded.

    Works on anything with a ``source_ref`` (ParsedLine, Entry). The result is
    in the order of the winning items.
    """
    latest: dict[str, T] = {}
    seen = 0
    for item in items:
        seen += 1
        latest.pop(item.source_ref, None)  # re-insert so order follows the winner
        latest[item.source_ref] = item
    return list(latest.values()), seen - len(latest)


def line_is_invalid(entry: Entry) -> bool:
    """True when a stored entry is unusable for training and counts as an invalid line."""
    return entry.invalid


def first_error(entry: Entry) -> tuple[str, str]:
    """``(code, message)`` of the entry's first error, image level first; for per-line reports.

    Only for entries with ``has_errors``; raises ValueError otherwise.
    """
    for _, found in line_problems(entry.line):
        if found["code"].startswith("ERROR_"):
            return found["code"], found["message"]
    raise ValueError(f"{entry.source_ref} has no errors")


@dataclass(frozen=True)
class ManifestStats:
    total_lines: int        # every line: valid, invalid, ignored, superseded
    valid_lines: int        # stored and usable for training
    invalid_lines: int      # rejected, or stored but unusable (Entry.invalid)
    ignored_lines: int      # stored, no error that matters, but no usable label
    superseded_lines: int   # replaced by a later line with the same source-ref
    labels: tuple[str, ...]         # distinct usable labels, sorted
    label_entries: dict[str, int]   # label -> images carrying it
    label_boxes: dict[str, int]     # label -> valid bounding boxes
    error_codes: dict[str, int]     # code -> occurrences, at every level, rejected lines included

    @property
    def too_many_invalid(self) -> bool:
        return too_many_invalid(self.invalid_lines, self.total_lines)


def summarize(entries: Iterable[Entry], rejected: Iterable[RejectedLine], superseded: int = 0) -> ManifestStats:
    """Count what a manifest import produced. ``superseded``: see :func:`dedupe_by_source_ref`."""
    rejected = list(rejected)
    valid = invalid = ignored = 0
    label_entries: Counter = Counter()
    label_boxes: Counter = Counter()
    error_codes: Counter = Counter(r.code for r in rejected)
    for entry in entries:
        if entry.invalid:
            invalid += 1
        elif entry.labels:
            valid += 1
        else:
            ignored += 1
        label_entries.update(entry.labels)
        label_boxes.update(entry.bounding_boxes)
        if entry.has_errors:
            error_codes.update(p["code"] for _, p in line_problems(entry.line) if p["code"].startswith("ERROR_"))
    return ManifestStats(
        total_lines=valid + invalid + ignored + len(rejected) + superseded,
        valid_lines=valid,
        invalid_lines=invalid + len(rejected),
        ignored_lines=ignored,
        superseded_lines=superseded,
        labels=tuple(sorted(label_entries)),
        label_entries=dict(sorted(label_entries.items())),
        label_boxes=dict(sorted(label_boxes.items())),
        error_codes=dict(sorted(error_codes.items())),
    )


def too_many_invalid(invalid: int, total: int) -> bool:
    """The 20 % rule: True only when MORE than 20 % of all lines are invalid."""
    # Integers, so that exactly 20 % is never pushed over by rounding.
    return invalid * 100 > total * MAX_INVALID_FRACTION_PERCENT


# --- the manifest-level limits, each a {"code", "message"} or None ------------

def manifest_size_problem(size_bytes: int) -> dict[str, str] | None:
    if size_bytes > MAX_MANIFEST_BYTES:
        return c.problem(c.ERROR_MANIFEST_SIZE_TOO_LARGE, f"{size_bytes} bytes; the maximum is {MAX_MANIFEST_BYTES}.")
    return None


def line_count_problem(lines: int) -> dict[str, str] | None:
    if lines > MAX_LINES:
        return c.problem(c.ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM, f"{lines} lines; the maximum is {MAX_LINES}.")
    return None


def label_count_problem(labels: Iterable[str]) -> dict[str, str] | None:
    count = len(set(labels))
    if count > MAX_LABELS:
        return c.problem(c.ERROR_MANIFEST_TOO_MANY_LABELS, f"{count} labels; the maximum is {MAX_LABELS}.")
    return None


def invalid_rows_problem(invalid: int, total: int) -> dict[str, str] | None:
    if too_many_invalid(invalid, total):
        return c.problem(c.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST,
                         f"{invalid} of {total} lines are invalid; at most {MAX_INVALID_FRACTION_PERCENT}% may be.")
    return None


def bucket_problem(buckets: Iterable[str]) -> dict[str, str] | None:
    """The reference keeps a dataset's images in one bucket."""
    distinct = sorted(set(buckets))
    if len(distinct) > 1:
        shown = ", ".join(distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        return c.problem(c.ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS, f"Buckets: {shown}.")
    return None


def manifest_problems(stats: ManifestStats) -> list[dict[str, str]]:
    """The manifest-level errors that follow from the counts (line count, labels, invalid share)."""
    found = (
        line_count_problem(stats.total_lines),
        label_count_problem(stats.labels),
        invalid_rows_problem(stats.invalid_lines, stats.total_lines),
    )
    return [p for p in found if p is not None]
