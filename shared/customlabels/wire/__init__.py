"""The wire: every API this product speaks, derived from botocore-format service models.

* ``table``: the one operation table (API, operations, owner services, error names);
* ``model``: requests and results checked against a service model;
* ``protocols``: AWS JSON 1.1 and REST-JSON over HTTP;
* ``apis``: the table's APIs, loaded (model + protocol + signing name);
* ``dispatch``: the one request path (validate, call the owner, check, serialize, name errors);
* ``http``: the aiohttp face every server shares (request ids, error bodies, API routes).

The gateway speaks these APIs to clients; services speak the same protocols
to each other in distributed mode (without signatures, on the internal
network), so there is one encoding of every operation, not two.
"""
from customlabels.wire.model import CUSTOM_LABELS_OPERATIONS, ApiModel, load_api_model

__all__ = ["CUSTOM_LABELS_OPERATIONS", "ApiModel", "load_api_model"]
