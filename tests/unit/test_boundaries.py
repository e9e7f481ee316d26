"""Services talk only through events, ports and HTTP; serving never loads torch."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from customlabels.ports.documents import ScopedStore

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    """import-linter: every contract in pyproject.toml is checked, and kept."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache", "pyproject.toml"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts)} kept, 0 broken" in result.stdout, result.stdout


SERVING_PACKAGES = ("customlabels.ml.runtime", "customlabels.ml.evaluation", "services.hosting", "services.evaluation")


def test_serving_runs_a_model_without_loading_torch(tmp_path):
    """Every module of the serving packages imported, and a model loaded and run, in a fresh interpreter: no torch.

    What the import-linter contract says statically, seen at run time (an
    import hidden from the linter, e.g. by ``importlib``, would show here).
    The model is a tiny ONNX graph with the exported files' contract: the mean
    of each colour channel as three labels' scores.
    """
    import onnx
    from customlabels.ml.runtime.artifact import CARD_NAME, ONNX_NAME, ModelCard
    from customlabels.ml.runtime.onnx_file import INPUT, metadata
    from customlabels.ml.runtime.preprocess import Preprocessing
    from onnx import TensorProto, helper

    labels, spec = ["red", "green", "blue"], Preprocessing(32, (0.0,) * 3, (1.0,) * 3)
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", [INPUT], ["scores"], axes=[2, 3], keepdims=0)], "channel-means",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata(labels, "multilabel", "none", spec).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(tmp_path / ONNX_NAME))
    card = ModelCard(task="multilabel", labels=labels, preprocessing=spec.to_dict(), backbone="none")
    (tmp_path / CARD_NAME).write_bytes(card.to_json())
    image = next((REPO.parent / "shared" / "datasets" / "flowers-small" / "sunflowers").glob("*.jpg"))

    script = textwrap.dedent(f"""
        import importlib, json, pkgutil, sys
        for name in {SERVING_PACKAGES!r}:
            package = importlib.import_module(name)
            for module in pkgutil.walk_packages(package.__path__, name + "."):
                importlib.import_module(module.name)
        from customlabels.ml.runtime.served import ServedModel
        served = ServedModel.load({str(tmp_path)!r}, threads=1)
        (predictions,) = served.predict([open({str(image)!r}, "rb").read()])
        print(json.dumps({{"scores": [p.score for p in predictions],
                          "loaded": sorted(m for m in ("torch", "torchvision", "timm") if m in sys.modules)}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["loaded"] == []
    assert len(answer["scores"]) == 3 and all(0 < s < 255 for s in answer["scores"])  # channel means of a photo


def test_every_service_is_in_the_independence_contract():
    """A new service folder must join the contract, or it would escape the check."""
    text = (REPO / "pyproject.toml").read_text()
    services = sorted(p.name for p in (REPO / "services").iterdir() if (p / "service.py").exists())
    assert services, "no services found"
    for name in services:
        assert f'"services.{name}"' in text, f"services.{name} is missing from the import-linter contract"


def test_a_service_cannot_name_another_services_collection():
    scoped = ScopedStore(store=None, service="datasets")
    assert scoped.name("entries") == "datasets.entries"
    with pytest.raises(ValueError):
        scoped.name("projects.projects")
