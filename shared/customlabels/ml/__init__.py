"""Machine learning, split by what each part needs (models, training utilities, export, serving).

    runtime/      serving: the artifact and its card, preprocessing, the ONNX file on
                  onnxruntime, ServedModel. Never imports torch (checked: pyproject's
                  import-linter contract and tests/unit/test_boundaries.py).
    evaluation/   the reference's metrics and files (numpy only; the evaluation service).
    splits.py     stratified holdout and folds (numpy only; the training service's data step too).
    train_utils.py  what both trainers share: time budget and progress, LR schedule,
                  frozen BatchNorm, weight averaging (timm's ModelEmaV3).
    backbones.py  pretrained ImageNet trunks from verified files (weights.py installs them).
    classifier.py, detector.py  the two models and their training; neither imports the other.
    probes.py     linear heads on cached features: the exact fit, recipes chosen by cross-validation,
                  pseudo-labels for unlabeled images (the classifier's stages 1-2).
    calibration.py  temperature / per-label Platt scaling of logits on held-out predictions.
    train.py      train(task, samples, ...): the one entry point for the training service.
    export.py     export(trained, path): both models to ONNX, with the metadata the runtime reads.

Arrows point one way: models -> probes, calibration, train_utils, splits, backbones, evaluation, runtime;
train -> models; export -> models, runtime; runtime and evaluation -> nothing above them.
"""
