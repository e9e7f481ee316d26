"""What a stored entry line trains: its labels and boxes, read back from the line itself.

Stored lines carry their validation report embedded (``errors``/``warnings``),
so the line is the single source of truth: a line with an error that makes it
unusable trains nothing; any other line is validated again (report stripped)
to recover its image-level labels and valid boxes.
"""
from __future__ import annotations

import json

from .codes import LINE_FATAL_CODES, TERMINAL_LINE_CODES
from .lines import METADATA_SUFFIX, Entry, RejectedLine, line_codes, parse_line, validate_line

_UNUSABLE = LINE_FATAL_CODES | TERMINAL_LINE_CODES


def stored_line_targets(line: dict, line_number: int = 1) -> Entry | None:
    """The entry a stored line describes, or None when the line is unusable for training."""
    if any(code in _UNUSABLE for code in line_codes(line)):
        return None
    parsed = parse_line(json.dumps(line), line_number)
    if isinstance(parsed, RejectedLine):
        return None
    entry = validate_line(parsed)
    return None if entry.invalid else entry


def is_localization(entry: Entry) -> bool:
    """A line for an object-localization model: boxes, or a checked detection attribute with none (a negative)."""
    return bool(entry.boxes) or (entry.task in ("detection", "mixed") and not entry.labels)


def declared_labels(line: dict) -> set[str]:
    """The label names a line mentions, usable or not (to name a label whose every line is invalid)."""
    found: set[str] = set()
    for key, meta in line.items():
        if not key.endswith(METADATA_SUFFIX) or not isinstance(meta, dict):
            continue
        value, class_map = line.get(key[: -len(METADATA_SUFFIX)]), meta.get("class-map") or {}
        if isinstance(meta.get("class-name"), str):
            found.add(meta["class-name"])
        elif isinstance(value, list) and isinstance(class_map, dict):
            found.update(str(class_map[str(i)]) for i in value if str(i) in class_map)
        elif isinstance(value, dict) and isinstance(value.get("annotations"), list) and isinstance(class_map, dict):
            found.update(str(class_map[str(a.get("class_id"))]) for a in value["annotations"]
                         if isinstance(a, dict) and str(a.get("class_id")) in class_map)
    return found
