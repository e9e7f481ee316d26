"""The object-localization model: training within a budget, predictions, ONNX export and runtime.

Real weights (under $CUSTOMLABELS_WEIGHTS, default ./weights) and real photos
(../shared/datasets: raccoon, microcontroller, bccd); nothing is downloaded.
About 45 s on two CPU cores, most of it one 20-second training on raccoon
that the ONNX tests reuse.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from customlabels.ml import detector
from customlabels.ml.detector import TrainedDetector, train_detector
from customlabels.ml.evaluation.detection import Box, evaluate_detection
from customlabels.ml.export import export
from customlabels.ml.runtime.artifact import ModelCard
from customlabels.ml.runtime.onnx_file import Detection, OnnxFile
from customlabels.ml.runtime.preprocess import Preprocessing, load_pixels, preprocess
from customlabels.ml.runtime.served import ServedModel
from customlabels.ml.train_utils import WeightAverage
from PIL import Image

from tests.benchmarks.measure_detector import load_dataset, split
from tests.support.ml import WEIGHTS, offline, two_threads  # noqa: F401 (autouse fixtures)
from tests.support.work_clock import work_clock

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"

pytestmark = pytest.mark.skipif(not DATASETS.is_dir(), reason=f"the shared datasets are expected at {DATASETS}")


@pytest.fixture(scope="module", autouse=True)
def clock(two_threads):
    """Budgets, and these tests' measures of them, in this process's work (``tests.support.work_clock``):
    what a budget buys, and by how much it is overrun, do not depend on other processes' load."""
    with work_clock() as clock:
        yield clock


@pytest.fixture(scope="module")
def raccoon():
    images, boxes, labels = load_dataset("raccoon", DATASETS)
    train, test = split(boxes, labels, seed=0)
    return images, boxes, labels, train, test


@pytest.fixture(scope="module")
def raccoon_model(raccoon, clock) -> tuple[TrainedDetector, float, list]:
    """About 20 s of training on 100 raccoon photos (at 160 px: raccoons are big, and the suite stays quick)."""
    images, boxes, labels, train, _ = raccoon
    calls = []
    start = clock.monotonic()
    model = train_detector([(images[i], boxes[i]) for i in train[:100]], labels=labels, budget_seconds=20,
                           seed=0, progress=lambda *a: calls.append(a), input_size=160)
    return model, clock.monotonic() - start, calls


def jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=95)
    return out.getvalue()


# --- preprocessing ----------------------------------------------------------------------
def test_stretch_keeps_the_whole_image_and_crop_stays_the_default():
    wide = np.zeros((90, 320, 3), dtype=np.uint8)
    wide[:, :40] = 255  # a white band at the left edge, 1/8 of the width
    data = jpeg(wide)
    stretched = load_pixels(data, 64, "stretch")
    cropped = load_pixels(data, 64)
    assert stretched.shape == cropped.shape == (64, 64, 3)
    assert stretched[:, :6].mean() > 200 and stretched[:, 10:].mean() < 30  # 1/8 of 64 = 8 columns, still there
    assert cropped[:, :6].mean() < 30  # the centre crop cut it away

    old = {"input_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3,
           "resize": "centre-crop to aspect <= 4:3, then bilinear resize to a square"}
    assert Preprocessing.from_dict(old).resize == "crop"
    assert Preprocessing.from_dict(old).to_dict() == old  # the classifier's metadata is unchanged
    spec = Preprocessing(320, (0.5,) * 3, (0.5,) * 3, "stretch")
    assert Preprocessing.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError):
        Preprocessing(224, resize="zoom")


# --- pieces -----------------------------------------------------------------------------------
def test_input_size_follows_the_small_boxes():
    big = [[(0, 0.1, 0.1, 0.6, 0.7)]] * 20
    small = [[(0, 0.1, 0.1, 0.16, 0.17)] * 10] * 20  # shorter side 0.06
    assert detector.choose_input_size(big, "cpu", 600, 100) == 256
    assert detector.choose_input_size(small, "cpu", 1200, 100) == 416
    assert detector.choose_input_size(small, "cpu", 20, 100) == 256  # a short budget on a CPU: fewer pixels
    assert detector.choose_input_size(small, "cuda", 60, 100) == 512
    assert detector.choose_input_size([[]], "cuda", 60, 1) % 32 == 0


def test_augmentation_moves_boxes_with_the_pixels():
    """A bright square on black: after random zoom/shift/flip the box still frames bright pixels."""
    size = 128
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[32:80, 16:48] = 255
    box = [(0, 16 / size, 32 / size, 48 / size, 80 / size)]
    spec = Preprocessing(size, (0.5,) * 3, (0.5,) * 3, "stretch")
    data = detector._DeviceData(np.stack([image] * 16), [box] * 16, spec, "cpu")
    generator = torch.Generator().manual_seed(0)
    x, boxes, labels = detector._augment(data, torch.arange(16), generator)
    assert x.shape == (16, 3, size, size) and boxes.shape == (16, 1, 4)
    checked = 0
    for k in range(16):
        if labels[k, 0] < 0:
            continue  # mostly cut away: dropped
        x0, y0, x1, y1 = boxes[k, 0].round().int().tolist()
        inside = x[k, :, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
        # Colour jitter dims the white (down to about 0.16 normalised), black is about -1, padding 0.
        assert inside.min() > 0.1, (k, boxes[k, 0])
        outside = x[k].clone()
        outside[:, max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = -1
        assert outside.max() < 0.05, (k, boxes[k, 0])  # nothing bright is left outside the box
        checked += 1
    assert checked >= 8


def test_postprocess_keeps_one_box_per_object_and_pads_with_zero():
    boxes = torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0.11, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]]])
    scores = torch.tensor([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]])  # two overlapping "a", one "b"
    _, out_scores, out_labels = detector.postprocess(boxes, scores)
    kept = out_scores[0] > 0
    assert kept.sum() == 2 and out_scores[0, 0] == pytest.approx(0.9) and out_scores[0, 1] == pytest.approx(0.7)
    assert out_labels[0, :2].tolist() == [0, 1]
    assert (out_scores[0, 2:] == 0).all()
    # the same boxes in two images are kept apart
    both = detector.postprocess(boxes.repeat(2, 1, 1), scores.repeat(2, 1, 1))
    assert torch.equal(both[1][0], both[1][1])


def test_weight_average_follows_its_window_with_a_warm_up_and_copies_buffers():
    """The evaluated weights: after n updates, decay min(1 - 1/window, (1 + n)/(10 + n)); buffers copied."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    average = WeightAverage(net)
    expected = [p.detach().clone() for p in net.parameters()]
    for n, window in enumerate([10.0, 10.0, 50.0, 50.0, 2.0], start=1):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].running_mean.add_(1.0)
        average.update_within(net, window)
        decay = min(1 - 1 / window, (1 + n) / (10 + n))
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, net.parameters())]
        for e, a in zip(expected, average.module.parameters()):
            torch.testing.assert_close(a, e)
        assert torch.equal(average.module[1].running_mean, net[1].running_mean)
    assert not average.module.training and average.module is not net
    assert next(average.module.parameters()).device == next(net.parameters()).device


# --- training ----------------------------------------------------------------------------------
def test_negatives_degenerate_boxes_and_broken_images_are_handled_within_budget(datasets_dir, clock):
    images, boxes, labels = load_dataset("microcontroller", datasets_dir)
    items = [(images[i], boxes[i]) for i in range(6)]
    items.append((images[6], []))  # a negative
    items.append((images[7], [Box(labels[0], 0.2, 0.2, 0.0, 0.3),  # no width
                              Box(labels[1], 0.5, 0.5, 0.2, -0.1)]))  # negative height
    items.append((b"this is not an image", [Box(labels[0], 0.1, 0.1, 0.2, 0.2)]))
    start = clock.monotonic()
    model = train_detector(items, labels=labels, budget_seconds=8, input_size=128, seed=1)
    elapsed = clock.monotonic() - start
    assert elapsed < 8 + 2
    log = {key: value for entry in model.log for key, value in entry.items() if key in ("skipped_images",
                                                                                      "dropped_degenerate")}
    assert log == {"skipped_images": 1, "dropped_degenerate": 2}
    assert model.task == "detection" and model.labels == labels
    assert model.preprocessing.resize == "stretch" and model.input_size == 128

    found = model.predict(images[10:13])
    assert len(found) == 3
    for image in found:
        assert len(image) <= detector.MAX_DETECTIONS
        assert [d.score for d in image] == sorted((d.score for d in image), reverse=True)
        for d in image:
            assert isinstance(d, Detection) and 0 <= d.label_index < len(labels) and 0 < d.score <= 1
            assert 0 <= d.left <= 1 and 0 <= d.top <= 1 and d.width >= 0 and d.height >= 0
            assert d.left + d.width <= 1 + 1e-6 and d.top + d.height <= 1 + 1e-6
    assert model.predict([]) == []

    with pytest.raises(ValueError, match="not one of the labels"):
        train_detector([(images[0], [Box("unicorn", 0.1, 0.1, 0.2, 0.2)])], labels=labels, budget_seconds=5)
    with pytest.raises(ValueError, match="could be decoded"):
        train_detector([(b"junk", [])], labels=labels, budget_seconds=5, input_size=128)


def test_a_short_training_finds_raccoons_better_than_a_constant_box(raccoon, raccoon_model):
    """Scored on 40 unseen photos; the baseline puts the training set's mean box on every image.

    Raccoons are big (the median box covers half the photo), so a fixed
    central box already matches some: that, not zero, is chance here.
    """
    images, boxes, labels, train, test = raccoon
    model, elapsed, calls = raccoon_model
    assert elapsed < 20 + 2  # the budget includes decoding, loading the backbone and the final evaluation
    stages = [stage for stage, _, _ in calls]
    assert stages[0] == "decode" and stages[-1] == "done" and stages.count("train") >= 2  # the plan, evaluations
    assert all(0 <= fraction <= 1.05 for _, fraction, _ in calls)
    assert any(entry.get("stage") == "chosen" for entry in model.log)

    truth = [[Box(b.label, b.left, b.top, b.width, b.height) for b in boxes[i]] for i in test]
    found = model.predict([images[i] for i in test])
    ours = evaluate_detection(labels, truth, [[Box(labels[d.label_index], d.left, d.top, d.width, d.height, d.score)
                                               for d in image] for image in found])
    seen = [b for i in train for b in boxes[i]]
    mean = [float(np.mean([getattr(b, k) for b in seen])) for k in ("left", "top", "width", "height")]
    constant = evaluate_detection(labels, truth, [[Box(labels[0], *mean, 1.0)] for _ in test])
    # Measured on 2 cores: about 55 steps, macro-F1 0.88 and mAP 0.84-0.87 against the constant box's 0.65 F1.
    trained = [entry for entry in model.log if "steps" in entry]
    assert ours.f1_score > constant.f1_score + 0.1, (ours.f1_score, constant.f1_score, trained)
    assert ours.aggregate.average_precision > 0.6


# --- ONNX ------------------------------------------------------------------------------------------
def test_onnx_export_matches_the_torch_model_and_carries_its_metadata(raccoon, raccoon_model, tmp_path):
    images, _, labels, _, test = raccoon
    model, _, _ = raccoon_model
    path = export(model, tmp_path / "detector.onnx", extra_metadata={"customlabels.version": 3})
    runtime = OnnxFile(path, threads=2)
    assert runtime.labels == labels and runtime.task == "detection" and runtime.backbone == model.backbone
    assert runtime.preprocessing == model.preprocessing
    assert json.loads(runtime.metadata["customlabels.version"]) == 3

    photos = [images[i] for i in test[:5]]
    batch = preprocess(photos, model.preprocessing)
    onnx_boxes, onnx_scores, onnx_labels = runtime.run(batch)
    assert onnx_boxes.shape == (5, detector.MAX_DETECTIONS, 4) and onnx_scores.shape == (5, detector.MAX_DETECTIONS)
    assert onnx_labels.dtype == np.int64 and onnx_boxes.dtype == onnx_scores.dtype == np.float32
    single = runtime.run(batch[2:3])  # the batch size is dynamic, and images do not affect each other
    np.testing.assert_allclose(single[1][0], onnx_scores[2], atol=1e-5)

    with torch.inference_mode():
        torch_out = [t.numpy() for t in model.model.eval()(torch.from_numpy(batch))]
    for k in range(5):
        assert_same_detections([t[k] for t in torch_out], [o[k] for o in (onnx_boxes, onnx_scores, onnx_labels)])

    card = ModelCard(task="detection", labels=labels, preprocessing=model.preprocessing.to_dict(),
                     backbone=model.backbone)
    served = ServedModel(path, card, threads=2)
    for found, predictions in zip(model.predict(photos), served.predict(photos)):
        assert any(d.score >= 0.3 for d in found)  # a raccoon photo: something is found
        assert [p.score for p in predictions] == sorted((p.score for p in predictions), reverse=True)
        assert_same_detections(
            (np.array([[d.left, d.top, d.left + d.width, d.top + d.height] for d in found]).reshape(-1, 4),
             np.array([d.score for d in found]), np.array([d.label_index for d in found])),
            (np.array([[x, y, x + w, y + h] for x, y, w, h in (p.box for p in predictions)]).reshape(-1, 4),
             np.array([p.score for p in predictions]), np.array([labels.index(p.label) for p in predictions])))


def assert_same_detections(a, b, atol=1e-4):
    """Equal scores (as multisets) and, for every score not tied with another, the same box and label.

    Exactly tied scores (flat image regions give identical features) may come
    out in another order from another runtime, and so may the boxes NMS keeps
    among them: the order of ties is not part of the contract.
    """
    (a_boxes, a_scores, a_labels), (b_boxes, b_scores, b_labels) = a, b
    np.testing.assert_allclose(np.sort(a_scores), np.sort(b_scores), atol=atol)
    compared = 0
    for i, score in enumerate(a_scores):
        if score <= 0 or np.sum(np.abs(a_scores - score) < 10 * atol) > 1:
            continue
        j = int(np.argmin(np.abs(b_scores - score)))
        np.testing.assert_allclose(a_boxes[i], b_boxes[j], atol=atol)
        assert a_labels[i] == b_labels[j]
        compared += 1
    assert compared >= min(3, int((a_scores > 0).sum()))
