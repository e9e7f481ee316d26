"""One table of settings (``customlabels.config.ENVIRONMENT``): exactly what the code reads, printed by
``customlabels serve --help`` and documented in the README."""
from __future__ import annotations

import ast
import dataclasses
import re

from customlabels.config import BACKEND_SERVICE_NAMES, ENVIRONMENT
from customlabels.ports.operations import OWNERS

from services.cli.main import build_parser
from services.hosting.service import HostingConfig
from tests.support.server import REPO

CLIENT_SIDE = {"CUSTOMLABELS_ENDPOINT"}  # read by the CLI and the Python client, never by a server
URL_TEMPLATE = "CUSTOMLABELS_<SERVICE>_URL"
_NAME = re.compile(r"CUSTOMLABELS_[A-Z0-9_]*[A-Z0-9]")  # a whole name: an f-string's pieces end in _


def names_in_code() -> set[str]:
    """Every CUSTOMLABELS_* name the server's code spells out; f-strings expanded over what they range over."""
    found = set()
    for path in [*(REPO / "services").rglob("*.py"), *(REPO / "shared" / "customlabels").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _NAME.fullmatch(node.value):
                found.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                template = "".join(v.value if isinstance(v, ast.Constant) else "<X>" for v in node.values)
                if template == "CUSTOMLABELS_<X>_URL":
                    found.add(URL_TEMPLATE)
                elif template == "CUSTOMLABELS_HOSTING_<X>":
                    found |= hosting_names()
                elif re.fullmatch(r"CUSTOMLABELS_[A-Z0-9_<>]+", template):
                    found.add(template)  # a new pattern: name it in ENVIRONMENT and teach this test
    return found - CLIENT_SIDE


def hosting_names() -> set[str]:
    return {f"CUSTOMLABELS_HOSTING_{field.name.upper()}" for field in dataclasses.fields(HostingConfig)}


def test_the_table_names_exactly_what_the_code_reads():
    code = names_in_code()
    assert not code - set(ENVIRONMENT), f"read but not in customlabels.config.ENVIRONMENT: {sorted(code - set(ENVIRONMENT))}"
    assert not set(ENVIRONMENT) - code, f"in ENVIRONMENT but read by nothing: {sorted(set(ENVIRONMENT) - code)}"
    assert all(meaning.strip() for meaning in ENVIRONMENT.values())


def test_serve_help_lists_every_setting():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    text = serve.format_help()
    for name in ENVIRONMENT:
        assert name in text, f"`customlabels serve --help` does not list {name}"


def test_the_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    for name in ENVIRONMENT:
        # <SERVICE>: each service other services call (the owners of operations)
        expanded = [f"CUSTOMLABELS_{s.upper()}_URL" for s in set(OWNERS.values()) & set(BACKEND_SERVICE_NAMES)] \
            if name == URL_TEMPLATE else [name]
        for variable in expanded:
            assert f"`{variable}`" in readme, f"README.md does not document {variable}"
