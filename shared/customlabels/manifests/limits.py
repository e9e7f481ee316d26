"""The reference's documented manifest limits, in one place."""
from __future__ import annotations

MAX_MANIFEST_BYTES = 1024 ** 3      # 1 GiB (ERROR_MANIFEST_SIZE_TOO_LARGE)
MAX_LINES = 250_000                 # lines, blank and invalid ones included (ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM)
MAX_LINE_CHARS = 100_000            # longer lines are ERROR_INVALID_JSON_LINE
MAX_LABELS = 250                    # distinct labels in a manifest (ERROR_MANIFEST_TOO_MANY_LABELS)
MAX_LABELS_PER_IMAGE = 50           # ERROR_TOO_MANY_LABELS_IN_IMAGE
MAX_BOXES_PER_IMAGE = 50            # ERROR_TOO_MANY_BOUNDING_BOXES
MAX_LABEL_NAME_LENGTH = 256         # ERROR_INVALID_LABEL_NAME_LENGTH (and at least 1)
MAX_INVALID_FRACTION_PERCENT = 20   # an import fails when MORE than this share of lines is invalid

# Training shrinks images whose longer side exceeds this, and a box must still
# be more than MIN_BOX_SIDE pixels wide and high afterwards.
TRAINING_MAX_SIDE = 1280
MIN_BOX_SIDE = 1

# Float noise allowed when checking a box against the frame: 404.6 + 95.4 is
# 500.00000000000006 in binary floating point, and the bees manifest is full of
# such fractional coordinates. A millionth of a pixel changes nothing real.
FRAME_TOLERANCE = 1e-6
