"""Ground Truth manifest validation, as strict as the reference service (pure, no I/O).

Typical import::

    rejected, parsed = [], []
    for number, raw in iter_manifest_lines(blob):
        result = parse_line(raw, number)
        (rejected if isinstance(result, RejectedLine) else parsed).append(result)
    parsed, superseded = dedupe_by_source_ref(parsed)     # later lines win
    entries = [validate_line(p, image_checks.get(p.source_ref)) for p in parsed]
    stats = summarize(entries, rejected, superseded)
    problems = manifest_problems(stats)                    # empty: the import succeeds

See :mod:`.lines` for the per-line rules and the choices made where the
reference is ambiguous, :mod:`.codes` for every code and message.
"""
from . import codes
from .codes import LINE_FATAL_CODES, MESSAGES, TERMINAL_LINE_CODES, message, problem
from .limits import (
    MAX_BOXES_PER_IMAGE,
    MAX_LABEL_NAME_LENGTH,
    MAX_LABELS,
    MAX_LABELS_PER_IMAGE,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_MANIFEST_BYTES,
    TRAINING_MAX_SIDE,
)
from .lines import (
    CLASSIFICATION,
    DETECTION,
    MIXED,
    Entry,
    ImageCheck,
    ParsedLine,
    RejectedLine,
    entry_line_json,
    line_codes,
    line_problems,
    parse_line,
    validate_line,
)
from .targets import stored_line_targets
from .manifest import (
    ManifestStats,
    bucket_problem,
    dedupe_by_source_ref,
    first_error,
    invalid_rows_problem,
    iter_manifest_lines,
    label_count_problem,
    line_count_problem,
    line_is_invalid,
    manifest_problems,
    manifest_size_problem,
    summarize,
    too_many_invalid,
)

__all__ = [
    "CLASSIFICATION", "DETECTION", "MIXED",
    "LINE_FATAL_CODES", "MESSAGES", "TERMINAL_LINE_CODES",
    "MAX_BOXES_PER_IMAGE", "MAX_LABEL_NAME_LENGTH", "MAX_LABELS", "MAX_LABELS_PER_IMAGE",
    "MAX_LINE_CHARS", "MAX_LINES", "MAX_MANIFEST_BYTES", "TRAINING_MAX_SIDE",
    "Entry", "ImageCheck", "ManifestStats", "ParsedLine", "RejectedLine",
    "bucket_problem", "codes", "dedupe_by_source_ref", "entry_line_json", "first_error", "invalid_rows_problem",
    "iter_manifest_lines", "label_count_problem", "line_codes", "line_count_problem", "line_is_invalid", "line_problems",
    "manifest_problems", "manifest_size_problem", "message", "parse_line", "problem", "summarize",
    "stored_line_targets", "too_many_invalid", "validate_line",
]
