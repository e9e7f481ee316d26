"""Every manifest error and warning code, with the reference's message for it.

One place for the wording: validation code never types a message itself, it
calls :func:`problem` with a code (and, where useful, a detail sentence that is
appended to the reference's message, so clients matching on the reference
text with ``startswith`` keep working).

Messages are the reference's own where its documentation gives one. Where it
gives none, or where the code is ours, the comment says so.
"""
from __future__ import annotations

# --- Terminal line errors: the line is dropped, never stored. ----------------
ERROR_INVALID_JSON_LINE = "ERROR_INVALID_JSON_LINE"
ERROR_MISSING_SOURCE_REF = "ERROR_MISSING_SOURCE_REF"
ERROR_INVALID_SOURCE_REF_FORMAT = "ERROR_INVALID_SOURCE_REF_FORMAT"

# --- Non-terminal line errors: the entry is stored, errors embedded. ---------
ERROR_NO_LABEL_ATTRIBUTES = "ERROR_NO_LABEL_ATTRIBUTES"
ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT = "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT"
ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT = "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT"
ERROR_NO_VALID_LABEL_ATTRIBUTES = "ERROR_NO_VALID_LABEL_ATTRIBUTES"
ERROR_UNSUPPORTED_USE_CASE_TYPE = "ERROR_UNSUPPORTED_USE_CASE_TYPE"
ERROR_INVALID_LABEL_NAME_LENGTH = "ERROR_INVALID_LABEL_NAME_LENGTH"
ERROR_INVALID_BOUNDING_BOX = "ERROR_INVALID_BOUNDING_BOX"
ERROR_BOUNDING_BOX_TOO_SMALL = "ERROR_BOUNDING_BOX_TOO_SMALL"
ERROR_NO_VALID_ANNOTATIONS = "ERROR_NO_VALID_ANNOTATIONS"
ERROR_MISSING_BOUNDING_BOX_CONFIDENCE = "ERROR_MISSING_BOUNDING_BOX_CONFIDENCE"
ERROR_MISSING_CLASS_MAP_ID = "ERROR_MISSING_CLASS_MAP_ID"
ERROR_TOO_MANY_BOUNDING_BOXES = "ERROR_TOO_MANY_BOUNDING_BOXES"
ERROR_INVALID_IMAGE = "ERROR_INVALID_IMAGE"
ERROR_INVALID_IMAGE_DIMENSION = "ERROR_INVALID_IMAGE_DIMENSION"
# Ours: the reference documents "at most 50 labels per image" but names no
# code for it, and reusing ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT would point the
# user at a format problem that isn't there.
ERROR_TOO_MANY_LABELS_IN_IMAGE = "ERROR_TOO_MANY_LABELS_IN_IMAGE"

# --- Warnings: the line is valid but carries no usable label. ---------------
WARNING_NO_ANNOTATIONS = "WARNING_NO_ANNOTATIONS"
WARNING_NO_ATTRIBUTE_ANNOTATIONS = "WARNING_NO_ATTRIBUTE_ANNOTATIONS"
WARNING_UNANNOTATED_RECORD = "WARNING_UNANNOTATED_RECORD"

# --- Manifest-level (file and content) errors. -------------------------------
ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT = "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT"
ERROR_MANIFEST_SIZE_TOO_LARGE = "ERROR_MANIFEST_SIZE_TOO_LARGE"
ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM = "ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM"
ERROR_MANIFEST_TOO_MANY_LABELS = "ERROR_MANIFEST_TOO_MANY_LABELS"
ERROR_MANIFEST_TOO_FEW_LABELS = "ERROR_MANIFEST_TOO_FEW_LABELS"
ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST = "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST"
ERROR_TOO_MANY_RECORDS_IN_ERROR = "ERROR_TOO_MANY_RECORDS_IN_ERROR"
ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS = "ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS"
ERROR_INSUFFICIENT_LABEL_OVERLAP = "ERROR_INSUFFICIENT_LABEL_OVERLAP"
ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE = "ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE"
# Training-time content errors the reference describes in words only; the codes are ours.
ERROR_NO_VALID_IMAGES = "ERROR_NO_VALID_IMAGES"
ERROR_IMAGES_IN_TRAINING_AND_TESTING = "ERROR_IMAGES_IN_TRAINING_AND_TESTING"
ERROR_LABEL_WITHOUT_TRAINING_IMAGES = "ERROR_LABEL_WITHOUT_TRAINING_IMAGES"
WARNING_IGNORED_FOR_USE_CASE = "WARNING_IGNORED_FOR_USE_CASE"

# Placeholders are named ({attribute}, {metadata}, ...) and filled by problem().
MESSAGES: dict[str, str] = {
    ERROR_INVALID_JSON_LINE: "The JSON Line has an invalid format.",
    ERROR_MISSING_SOURCE_REF: "The source-ref key is missing.",
    ERROR_INVALID_SOURCE_REF_FORMAT: "The format of the source-ref value is invalid.",
    ERROR_NO_LABEL_ATTRIBUTES: "No label attributes found.",
    ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT: "The format of the label attribute {attribute} is invalid.",
    ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT: "The format of the label attribute metadata is invalid.",
    ERROR_NO_VALID_LABEL_ATTRIBUTES: "No valid label attributes found.",
    ERROR_UNSUPPORTED_USE_CASE_TYPE: (
        "The use case type of the {metadata} label attribute metadata is unsupported. Check the type field."
    ),
    # The reference documents this code without a message; this one is ours.
    ERROR_INVALID_LABEL_NAME_LENGTH: "The length of the label name is invalid. A label name has 1 to 256 characters.",
    ERROR_INVALID_BOUNDING_BOX: "The bounding box has off frame values.",
    ERROR_BOUNDING_BOX_TOO_SMALL: "The height and width of the bounding box is too small.",
    ERROR_NO_VALID_ANNOTATIONS: "No valid annotations found.",
    ERROR_MISSING_BOUNDING_BOX_CONFIDENCE: "One or more bounding boxes has a missing confidence value.",
    ERROR_MISSING_CLASS_MAP_ID: "One of more class ids is missing from the class map.",
    ERROR_TOO_MANY_BOUNDING_BOXES: "There are more bounding boxes than the allowed maximum.",
    ERROR_INVALID_IMAGE: "The image is invalid. Check S3 path and/or image properties.",
    ERROR_INVALID_IMAGE_DIMENSION: "The image dimension(s) do not conform to allowed dimensions.",
    ERROR_TOO_MANY_LABELS_IN_IMAGE: "There are more labels in the image than the allowed maximum.",  # ours
    WARNING_NO_ANNOTATIONS: "No annotations were found.",
    WARNING_NO_ATTRIBUTE_ANNOTATIONS: "No attribute annotations were found.",
    WARNING_UNANNOTATED_RECORD: "Record is unannotated.",
    ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: "The manifest file extension or contents are invalid.",
    ERROR_MANIFEST_SIZE_TOO_LARGE: "The manifest file size exceeds the maximum supported size.",
    ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM: "The manifest file has too many rows.",
    ERROR_MANIFEST_TOO_MANY_LABELS: "The manifest file has too many labels.",
    ERROR_MANIFEST_TOO_FEW_LABELS: "The manifest file has too few labels.",
    ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: "The manifest file contains too many invalid rows.",
    ERROR_TOO_MANY_RECORDS_IN_ERROR: "The manifest file has too many terminal errors.",
    ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS: "The manifest file contains images from multiple S3 buckets.",
    ERROR_INSUFFICIENT_LABEL_OVERLAP: "Less than {percent}% label overlap between the training and testing manifest files.",
    ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE: (
        "The manifest file doesn't have enough labeled images to distribute the dataset."
    ),
    ERROR_NO_VALID_IMAGES: "The manifest file has no usable labeled images.",  # ours
    ERROR_IMAGES_IN_TRAINING_AND_TESTING: (  # ours
        "The same images are in the training and the testing dataset; a test image must not be trained on."
    ),
    ERROR_LABEL_WITHOUT_TRAINING_IMAGES: "The label {label} has no usable training images.",  # ours
    WARNING_IGNORED_FOR_USE_CASE: (  # ours
        "The line's labels are of another kind than the model's ({use_case}); the line is not used."
    ),
}

# Terminal line codes: a line with one of these is a RejectedLine.
TERMINAL_LINE_CODES = frozenset({ERROR_INVALID_JSON_LINE, ERROR_MISSING_SOURCE_REF, ERROR_INVALID_SOURCE_REF_FORMAT})

# Image-level codes that make the whole (stored) line unusable for training.
# ERROR_NO_LABEL_ATTRIBUTES is image-level too but not here: a stray key next
# to a valid label attribute leaves the line usable (when nothing else is
# valid, ERROR_NO_VALID_LABEL_ATTRIBUTES follows and that one is fatal).
LINE_FATAL_CODES = frozenset({
    ERROR_INVALID_IMAGE,
    ERROR_INVALID_IMAGE_DIMENSION,
    ERROR_NO_VALID_LABEL_ATTRIBUTES,
    ERROR_TOO_MANY_BOUNDING_BOXES,
    ERROR_TOO_MANY_LABELS_IN_IMAGE,
})


def message(code: str, detail: str | None = None, **fields: object) -> str:
    """The message for ``code``: the reference's text, placeholders filled, then ``detail``.

    Extra ``fields`` are ignored; an unknown code (one a caller made up) is its own text.
    """
    template = MESSAGES.get(code, code)
    text = template.format(**fields) if fields else template
    return f"{text} {detail}" if detail else text


def problem(code: str, detail: str | None = None, **fields: object) -> dict[str, str]:
    """An ``{"code", "message"}`` object as the reference embeds it in ``errors``/``warnings``."""
    return {"code": code, "message": message(code, detail, **fields)}
