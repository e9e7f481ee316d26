"""The Rekognition wire protocol (AWS JSON 1.1), derived from botocore's model.

The gateway speaks it to clients; services speak the same protocol to each
other in distributed mode (without signatures, on the internal network), so
there is one encoding of every operation, not two.
"""
from customlabels.wire.model import CUSTOM_LABELS_OPERATIONS, ApiModel, load_api_model

__all__ = ["CUSTOM_LABELS_OPERATIONS", "ApiModel", "load_api_model"]
