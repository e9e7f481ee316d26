"""The README runs as written: every ``python`` and ``sh`` block, in order, against a fresh server.

The blocks run as a newcomer would run them: from the root of a checkout
(a scratch folder holding ``.venv`` and with ``../shared/datasets`` beside
it, so nothing lands in the repository), in a shell with no customlabels or
AWS variables set, the Python ones one after another in one interpreter
namespace. The only change made to them is the server's address:
``http://127.0.0.1:8080`` becomes the test server's (``CUSTOMLABELS_ENDPOINT``
says the same to the CLI, whose default it is).

Rules the README follows, checked here:
* a block runs unless the line before it is ``<!-- readme-test: skip (REASON) -->``;
* a block's language is ``python`` or ``sh`` (run) or ``text`` (shown, never
  run): any other would slip past the tour unnoticed, so it fails;
* the first block is the two set-up commands, ``make run`` and ``make test``.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import REPO, ServerProcess

pytestmark = pytest.mark.slow

README = REPO / "README.md"
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
RUN, SHOWN = {"python", "sh"}, {"text"}
_FENCE = re.compile(r"^```(?P<language>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"<!-- readme-test: skip \((?P<reason>[^)]+)\) -->\s*\Z")


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    code: str
    skip_reason: str | None

    @property
    def runs(self) -> bool:
        return self.language in RUN and self.skip_reason is None

    def where(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in order; ValueError for a language the tour does not know."""
    found = []
    for match in _FENCE.finditer(text):
        language = match["language"].strip()
        line = text.count("\n", 0, match.start()) + 1
        if language not in RUN | SHOWN:
            raise ValueError(f"README.md:{line}: a ```{language} block: use python or sh (run by the tour) or text")
        skip = _SKIP.search(text[max(0, match.start() - 300):match.start()])
        found.append(Block(line, language, match["code"], skip["reason"] if skip else None))
    return found


def test_the_block_rules_catch_what_would_slip_past():
    """Negative controls for ``blocks``: an unknown language fails; a skip needs its marker right before."""
    with pytest.raises(ValueError, match="```bash"):
        blocks("```bash\necho hi\n```\n")
    found = blocks("<!-- readme-test: skip (needs Docker) -->\n```sh\ndocker ps\n```\ntext\n```sh\nls\n```\n")
    assert [(b.skip_reason, b.runs) for b in found] == [("needs Docker", False), (None, True)]


def test_the_readme_starts_with_exactly_the_two_setup_commands():
    first = blocks(README.read_text())[0]
    commands = [line.split("#")[0].strip() for line in first.code.splitlines() if line.strip()]
    assert commands == ["make run", "make test"] and first.skip_reason


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch 'checkout root': .venv is the repository's, ../shared is the team's."""
    root = tmp_path / "customlabels"
    root.mkdir()
    (root / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    return root


def test_every_block_of_the_readme_runs_in_order(checkout, monkeypatch, capsys):
    server = ServerProcess(checkout / "data").start()
    try:
        shell = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_"))}
        shell.update(CUSTOMLABELS_ENDPOINT=server.endpoint, PATH=f"{checkout / '.venv' / 'bin'}:{shell['PATH']}")
        for name in [k for k in os.environ if k.startswith(("CUSTOMLABELS_", "AWS_"))]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("CUSTOMLABELS_ENDPOINT", server.endpoint)
        monkeypatch.chdir(checkout)
        namespace: dict = {"__name__": "__readme__"}
        outputs: dict[int, str] = {}
        timings = []
        for block in blocks(README.read_text()):
            if not block.runs:
                continue
            code = block.code.replace(DEFAULT_ENDPOINT, server.endpoint)
            started = time.monotonic()
            if block.language == "python":
                try:
                    exec(compile(code, block.where(), "exec"), namespace)
                except Exception as error:
                    raise AssertionError(f"{block.where()} failed: {error!r}\n{code}\n--- server log ---\n"
                                         f"{server.log_tail()}") from error
                outputs[block.line] = capsys.readouterr().out
            else:
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=checkout, env=shell,
                                      capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, (f"{block.where()} exited {done.returncode}\n{code}\n--- stdout ---\n"
                                              f"{done.stdout}\n--- stderr ---\n{done.stderr}")
                outputs[block.line] = done.stdout
            timings.append((block.where(), time.monotonic() - started))
    finally:
        server.stop()
    with capsys.disabled():
        print("\nREADME tour, seconds per block:", ", ".join(f"{where} {s:.1f}" for where, s in timings))
    printed = "\n".join(outputs.values())
    # What the tour promises a reader along the way:
    assert "version v1 of project flowers" in printed  # `train` names the version it chose
    assert namespace["description"]["Status"] == "TRAINING_COMPLETED"
    labels = set(namespace["card"]["labels"])  # the exported model's, through the README's own classify()
    assert labels == {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    assert set(namespace["classify"](str(REPO.parent / "shared/datasets/flowers-small/roses/102501987_3cdb8e5394_n.jpg"))) <= labels
    assert (checkout / "model" / "model.onnx").is_file() and (checkout / "roses-drawn.jpg").is_file()
    assert (checkout.parent / "customlabels-backup" / "customlabels-backup.json").is_file()
    assert (checkout.parent / "customlabels-restored" / "documents.sqlite").is_file()
