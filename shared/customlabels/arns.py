"""ARNs in the reference's shapes, built and parsed in one place.

project  arn:aws:rekognition:<region>:<account>:project/<name>/<epoch-ms>
dataset  arn:aws:rekognition:<region>:<account>:project/<name>/dataset/<train|test>/<epoch-ms>
version  arn:aws:rekognition:<region>:<account>:project/<name>/version/<version>/<epoch-ms>
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = r"[a-zA-Z0-9_.\-]{1,255}"
_PROJECT = re.compile(rf"^arn:aws:rekognition:(?P<region>[a-z\d-]+):(?P<account>\d{{12}}):project/(?P<name>{_NAME})/(?P<ms>\d+)$")
_DATASET = re.compile(
    rf"^arn:aws:rekognition:(?P<region>[a-z\d-]+):(?P<account>\d{{12}}):project/(?P<name>{_NAME})"
    r"/dataset/(?P<type>train|test)/(?P<ms>\d+)$"
)
_VERSION = re.compile(
    rf"^arn:aws:rekognition:(?P<region>[a-z\d-]+):(?P<account>\d{{12}}):project/(?P<name>{_NAME})"
    rf"/version/(?P<version>{_NAME})/(?P<ms>\d+)$"
)


@dataclass(frozen=True)
class ParsedArn:
    kind: str  # project | dataset | version
    region: str
    account: str
    project_name: str
    ms: int
    dataset_type: str | None = None  # TRAIN | TEST
    version_name: str | None = None


@dataclass(frozen=True)
class Arns:
    region: str
    account: str

    @property
    def _base(self) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.account}:project"

    def project(self, name: str, ms: int) -> str:
        return f"{self._base}/{name}/{ms}"

    def dataset(self, project_name: str, dataset_type: str, ms: int) -> str:
        return f"{self._base}/{project_name}/dataset/{dataset_type.lower()}/{ms}"

    def version(self, project_name: str, version_name: str, ms: int) -> str:
        return f"{self._base}/{project_name}/version/{version_name}/{ms}"

    def parse(self, arn: str) -> ParsedArn | None:
        """The parts of one of our ARNs; None for anything else (including
        another region's or account's ARNs, which name nothing here)."""
        for kind, pattern in (("project", _PROJECT), ("dataset", _DATASET), ("version", _VERSION)):
            m = pattern.match(arn)
            if m:
                if (m["region"], m["account"]) != (self.region, self.account):
                    return None
                groups = m.groupdict()
                return ParsedArn(
                    kind=kind,
                    region=m["region"],
                    account=m["account"],
                    project_name=m["name"],
                    ms=int(m["ms"]),
                    dataset_type=groups.get("type", None) and groups["type"].upper(),
                    version_name=groups.get("version"),
                )
        return None
