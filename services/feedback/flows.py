"""Flow definitions: SageMaker's CreateFlowDefinition, DescribeFlowDefinition, ListFlowDefinitions,
DeleteFlowDefinition, for Custom Labels.

What a flow definition holds here, and what is accepted but unused:

* ``HumanLoopActivationConfig``: the activation conditions
  (``customlabels.activation``), checked at creation. Without it every
  prediction of a bound model opens a loop (A2I's rule for a built-in source
  without conditions).
* ``HumanLoopRequestSource``: optional; A2I's two built-in sources
  (moderation, Textract) are refused, this server serves Custom Labels.
  Flows are bound to models by tags (``customlabels:flow-definition`` on a
  version or its project), not by the request source.
* ``HumanLoopConfig``: optional (as in botocore's model). ``TaskCount`` (1-3)
  answers complete a loop; ``TaskTitle``/``TaskDescription`` are shown to
  reviewers; ``TaskAvailabilityLifetimeInSeconds`` (at most 864000) fails a
  loop nobody finished in time (``Expired``). ``HumanTaskUiArn`` must name one
  of the built-in review UIs (``BUILT_IN_UIS``: classification, detection);
  without a HumanLoopConfig the UI for the model's task is used.
  ``WorkteamArn``, ``TaskTimeLimitInSeconds``, ``TaskKeywords``,
  ``PublicWorkforceTaskPrice`` are accepted and unused: reviewers are whoever
  calls the answer API.
* ``RoleArn`` and ``OutputConfig.KmsKeyId``: accepted, unused.
  ``OutputConfig.S3OutputPath`` is where each completed loop's output.json
  goes (A2I's layout) and the audit report.
* Caps, as tags: ``customlabels:max-loops-per-minute``, ``-per-hour``,
  ``-per-day`` (whole numbers): captured predictions beyond them open no loop
  (counted as capped), StartHumanLoop beyond them is a
  ServiceQuotaExceededException.

A flow definition belongs to the account that created it (``accounts``):
its name is unique in that account, it is listed, described and deleted only
there, and its ``S3OutputPath`` must be a bucket of that account
(``customlabels.buckets``; AccessDeniedException otherwise, nothing created).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from customlabels import activation, clock, errors, tags
from customlabels.buckets import BucketOwners
from customlabels.messaging import UnitOfWork
from customlabels.ports.blobs import InvalidKey, check_bucket
from customlabels.ports.documents import Delete, DuplicateKey, Eq, Insert, ScopedStore

from services.feedback import paging
from services.feedback.accounts import FLOW_DEFINITION, AccountScope, parse, record_id
from services.feedback.records import (
    FLOWS,
    IN_PROGRESS,
    LOOPS,
    flow_description,
    flow_summary,
    split_s3_path,
)

BUILT_IN_UIS = {"customlabels-classification": "classification", "customlabels-detection": "detection"}
REFUSED_SOURCES = ("AWS/Rekognition/DetectModerationLabels/Image/V3", "AWS/Textract/AnalyzeDocument/Forms/V1")
CAP_TAGS = {"minute": tags.MAX_LOOPS_PER_MINUTE, "hour": tags.MAX_LOOPS_PER_HOUR, "day": tags.MAX_LOOPS_PER_DAY}
CAP_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_AVAILABILITY_SECONDS = 864000
MAX_FLOWS = 1000  # per account
DEFAULT_PAGE = 100


class FlowDefinitions:
    def __init__(self, store: ScopedStore, uow: Callable[[], UnitOfWork], tokens, accounts: AccountScope,
                 buckets: BucketOwners):
        self.store = store
        self.uow = uow
        self.tokens = tokens
        self.accounts = accounts
        self.buckets = buckets

    async def get(self, name: str) -> dict[str, Any]:
        """The flow definition named ``name`` in the caller's account, or ResourceNotFound."""
        doc = await self.store.get(FLOWS, record_id(self.accounts.current(), name))
        if doc is None:
            raise errors.ResourceNotFound(f"flow definition {name} does not exist")
        return doc

    async def by_arn(self, arn: str) -> dict[str, Any] | None:
        """The flow definition ``arn`` names (in its own account), or None."""
        parsed = parse(arn, FLOW_DEFINITION)
        doc = await self.store.get(FLOWS, record_id(*parsed)) if parsed else None
        return doc if doc is not None and doc["arn"] == arn else None

    # --- operations ---------------------------------------------------------------------
    async def create(self, req: dict[str, Any]) -> dict[str, Any]:
        name = req["FlowDefinitionName"]
        source = (req.get("HumanLoopRequestSource") or {}).get("AwsManagedHumanLoopRequestSource")
        if source in REFUSED_SOURCES:
            raise errors.InvalidParameter(
                f"HumanLoopRequestSource {source} is an AWS service this server does not run; omit it: flow "
                "definitions here review Custom Labels predictions, bound with the tag customlabels:flow-definition")
        conditions = _conditions(req.get("HumanLoopActivationConfig"))
        human_loop_config = req.get("HumanLoopConfig")
        ui = _check_human_loop_config(human_loop_config) if human_loop_config else None
        output_config = req["OutputConfig"]
        try:
            output_bucket = check_bucket(split_s3_path(output_config["S3OutputPath"])[0])
        except (InvalidKey, IndexError) as bad:
            raise errors.InvalidParameter(f"OutputConfig.S3OutputPath must be s3://bucket/prefix: {bad}") from None
        flow_tags = {t["Key"]: t["Value"] for t in req.get("Tags") or []}
        caps = _caps(flow_tags)
        account = self.accounts.current()
        if await self.store.count(FLOWS, [Eq("account", account)]) >= MAX_FLOWS:
            raise errors.LimitExceeded(f"at most {MAX_FLOWS} flow definitions; delete one first")
        await self.buckets.check(output_bucket, account, write=True)  # loops' output.json and reports go there
        created_ms = clock.now_ms()
        doc = {
            "_id": record_id(account, name),
            "account": account,
            "name": name,
            "arn": self.accounts.arn(FLOW_DEFINITION, account, name),
            "created_ms": created_ms,
            "status": "Active",
            "output_config": output_config,
            "role_arn": req["RoleArn"],
            "request_source": req.get("HumanLoopRequestSource"),
            "activation_config": req.get("HumanLoopActivationConfig"),
            "conditions": conditions.document if conditions else None,
            "audit": bool(conditions and conditions.audit),
            "human_loop_config": human_loop_config,
            "task_count": (human_loop_config or {}).get("TaskCount", 1),
            "ui": ui,
            "title": (human_loop_config or {}).get("TaskTitle"),
            "description": (human_loop_config or {}).get("TaskDescription"),
            "availability_seconds": (human_loop_config or {}).get("TaskAvailabilityLifetimeInSeconds"),
            "caps": caps,
            "tags": flow_tags,
        }
        uow = self.uow()
        uow.add(Insert(FLOWS, doc))
        try:
            await uow.commit()
        except DuplicateKey:
            raise errors.ResourceInUse(f"flow definition {name} already exists") from None
        return {"FlowDefinitionArn": doc["arn"]}

    async def describe(self, req: dict[str, Any]) -> dict[str, Any]:
        return flow_description(await self.get(req["FlowDefinitionName"]))

    async def list(self, req: dict[str, Any]) -> dict[str, Any]:
        descending = req.get("SortOrder", "Descending") == "Descending"
        after, before = req.get("CreationTimeAfter"), req.get("CreationTimeBefore")
        account = self.accounts.current()
        scope = ["ListFlowDefinitions", account, descending, str(after), str(before)]
        docs, token = await paging.page(
            self.store, self.tokens, FLOWS, [Eq("account", account)], order_by=("created_ms",), descending=descending,
            limit=req.get("MaxResults", DEFAULT_PAGE), token=req.get("NextToken"), scope=scope,
            keep=lambda doc: paging.in_range(doc["created_ms"], after, before, descending=descending))
        return {"FlowDefinitionSummaries": [flow_summary(d) for d in docs], "NextToken": token}

    async def delete(self, req: dict[str, Any]) -> dict[str, Any]:
        doc = await self.get(req["FlowDefinitionName"])
        open_loops = await self.store.count(LOOPS, [Eq("flow_arn", doc["arn"]), Eq("status", IN_PROGRESS)])
        if open_loops:
            raise errors.ResourceInUse(
                f"flow definition {doc['name']} has {open_loops} human loop(s) in progress: stop them first (StopHumanLoop)")
        uow = self.uow()
        uow.add(Delete(FLOWS, doc["_id"], expected_version=doc["_version"]))
        await uow.commit()
        return {}


def _conditions(config: dict[str, Any] | None) -> activation.Conditions | None:
    if not config:
        return None
    text = (config.get("HumanLoopActivationConditionsConfig") or {}).get("HumanLoopActivationConditions")
    try:
        return activation.parse(text if text is not None else "")
    except activation.ConditionError as bad:
        raise errors.InvalidParameter(f"HumanLoopActivationConditions: {bad}") from None


def _check_human_loop_config(config: dict[str, Any]) -> str:
    """The review UI's task; ValidationException for what this server cannot honour."""
    ui_name = config["HumanTaskUiArn"].rsplit("/", 1)[-1]
    if ui_name not in BUILT_IN_UIS:
        raise errors.InvalidParameter(
            f"HumanTaskUiArn must name a built-in review UI ({', '.join(f'human-task-ui/{n}' for n in BUILT_IN_UIS)}), "
            f"not {config['HumanTaskUiArn']}")
    if not 1 <= config["TaskCount"] <= 3:
        raise errors.InvalidParameter(f"TaskCount must be 1 to 3, not {config['TaskCount']}")
    lifetime = config.get("TaskAvailabilityLifetimeInSeconds")
    if lifetime is not None and not 1 <= lifetime <= MAX_AVAILABILITY_SECONDS:
        raise errors.InvalidParameter(f"TaskAvailabilityLifetimeInSeconds must be 1 to {MAX_AVAILABILITY_SECONDS}, not {lifetime}")
    return BUILT_IN_UIS[ui_name]


def _caps(flow_tags: dict[str, str]) -> dict[str, int]:
    caps = {}
    for window, tag in CAP_TAGS.items():
        if tag in flow_tags:
            value = flow_tags[tag]
            if not value.isdigit() or int(value) < 1:
                raise errors.InvalidParameter(f"tag {tag} must be a whole number of loops, 1 or more, not {value!r}")
            caps[window] = int(value)
    return caps
