"""Which account a feedback request acts in, and the SageMaker ARNs of its resources there.

Flow definitions and human loops belong to accounts: their names are unique
per account, as in AWS, and each is stored under ``<account>/<name>``
(``record_id``). A request names them by name in the caller's account
(``current``); a service's own work (no caller: event handlers, the tick)
reaches them by ARN or by their stored account, or else in the default
account (``CUSTOMLABELS_ACCOUNT_ID``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from customlabels.wire.dispatch import current_account

FLOW_DEFINITION, HUMAN_LOOP = "flow-definition", "human-loop"
_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]*:(?P<account>\d{12}):(?P<kind>flow-definition|human-loop)/(?P<name>[^/]+)$")


def record_id(account: str, name: str) -> str:
    """The stored ``_id`` of a flow definition or human loop."""
    return f"{account}/{name}"


def parse(arn: str, kind: str) -> tuple[str, str] | None:
    """(account, name) of a flow-definition or human-loop ARN of that ``kind``; None for anything else."""
    match = _ARN.match(arn) if isinstance(arn, str) else None
    return (match["account"], match["name"]) if match and match["kind"] == kind else None


@dataclass(frozen=True)
class AccountScope:
    region: str
    default_account: str

    def current(self) -> str:
        """The caller's account; the default account in a service's own work."""
        return current_account() or self.default_account

    def arn(self, kind: str, account: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{account}:{kind}/{name}"
