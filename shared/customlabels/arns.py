"""ARNs in the reference's shapes, built and parsed in one place.

project  arn:aws:rekognition:<region>:<account>:project/<name>/<epoch-ms>
dataset  arn:aws:rekognition:<region>:<account>:project/<name>/dataset/<train|test>/<epoch-ms>
version  arn:aws:rekognition:<region>:<account>:project/<name>/version/<version>/<epoch-ms>
stable   arn:aws:rekognition:<region>:<account>:project/<name>/version/live/0

The stable ARN is a project's alias for its live version (hosting resolves it;
promotion moves it). It passes botocore's ProjectVersionArn pattern, and no
real version has it: their ARNs end in a creation time, never 0.
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

STABLE_VERSION_NAME, STABLE_MS = "live", 0


@dataclass(frozen=True)
class ParsedArn:
    kind: str  # project | dataset | version
    region: str
    account: str
    project_name: str
    ms: int
    dataset_type: str | None = None  # TRAIN | TEST
    version_name: str | None = None

    @property
    def arns(self) -> "Arns":
        """ARNs of this one's region and account: for the resources made under it."""
        return Arns(self.region, self.account)

    @property
    def stable(self) -> bool:
        """Whether this is a project's stable ARN (see ``Arns.stable``)."""
        return self.kind == "version" and self.ms == STABLE_MS and self.version_name == STABLE_VERSION_NAME


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

    def stable(self, project_name: str) -> str:
        """The ARN callers keep across promotions: hosting answers it with the project's live version."""
        return self.version(project_name, STABLE_VERSION_NAME, STABLE_MS)

    def parse(self, arn: str) -> ParsedArn | None:
        """The parts of one of our ARNs, of any account (the dispatch keeps each caller to its
        own); None for anything else, another region's ARNs included (they name nothing here)."""
        parsed = parse_arn(arn)
        if parsed is None or parsed.region != self.region:
            return None
        return parsed


def account_of(arn: str) -> str | None:
    """The account of a project, dataset or version ARN; None for anything else."""
    parsed = parse_arn(arn)
    return parsed.account if parsed else None


def project_name_of(arn: str) -> str:
    """The project name in a project, dataset or version ARN (of any account); ValueError for anything else."""
    parsed = parse_arn(arn)
    if parsed is None:
        raise ValueError(f"not a project, dataset or model version ARN: {arn!r}")
    return parsed.project_name


def stable_arn_of(project_arn: str) -> str:
    """The stable ARN of the project ``project_arn`` names (its region and account)."""
    parsed = parse_arn(project_arn)
    if parsed is None:
        raise ValueError(f"not a project ARN: {project_arn!r}")
    return Arns(parsed.region, parsed.account).stable(parsed.project_name)


def parse_arn(arn: str) -> ParsedArn | None:
    """The parts of a project, dataset or version ARN of any region and account; None for anything else."""
    for kind, pattern in (("project", _PROJECT), ("dataset", _DATASET), ("version", _VERSION)):
        m = pattern.match(arn) if isinstance(arn, str) else None
        if m:
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
