"""Live accuracy, from audit flows (flow definitions whose only conditions are random samples).

An audit loop's answer never trains a model; it says whether the served
answer was right. Per audit flow and model version the ``audits`` collection
counts reviewed and accepted loops (changed in the loop's completing commit);
the report, rewritten after each, gives per version the share of
predictions reviewers accepted and its 95 % Wilson interval:
``<S3OutputPath>/<flow definition>/audit-report.json``.
"""
from __future__ import annotations

import json

from customlabels import clock
from customlabels.ports.blobs import BlobStore
from customlabels.ports.documents import Eq, ScopedStore

from services.feedback.flows import FlowDefinitions
from services.feedback.records import AUDITS, split_s3_path
from services.feedback.statistics import wilson

REPORT_NAME = "audit-report.json"


class AuditReports:
    def __init__(self, store: ScopedStore, blobs: BlobStore, flows: FlowDefinitions):
        self.store = store
        self.blobs = blobs
        self.flows = flows

    async def write(self, flow_arn: str) -> dict | None:
        """Rewrite the flow's report from its counts; the report, or None if the flow is gone."""
        flow = await self.flows.by_arn(flow_arn)
        if flow is None:
            return None
        page = await self.store.find(AUDITS, [Eq("flow_arn", flow_arn)], limit=1000)
        versions = []
        for counts in page.items:
            low, high = wilson(counts["accepted"], counts["reviewed"])
            versions.append({
                "ProjectVersionArn": counts["version_arn"],
                "Reviewed": counts["reviewed"],
                "Accepted": counts["accepted"],
                "AcceptedShare": round(counts["accepted"] / counts["reviewed"], 6) if counts["reviewed"] else None,
                "Interval95": [round(low, 6), round(high, 6)],
            })
        report = {"FlowDefinitionArn": flow_arn, "UpdatedAt": clock.now().isoformat(),
                  "Method": "share of audited predictions reviewers accepted; 95 % Wilson score interval",
                  "Versions": versions}
        bucket, prefix = split_s3_path(flow["output_config"]["S3OutputPath"])
        await self.blobs.ensure_bucket(bucket)
        await self.blobs.put(bucket, f"{prefix}{flow['name']}/{REPORT_NAME}", json.dumps(report, indent=2).encode())
        return report
