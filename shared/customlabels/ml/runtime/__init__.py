"""Serving a trained model: what hosting and evaluation need, and nothing that needs torch.

    artifact     where a version's artifact lives (``MODELS_BUCKET``, ``artifact_prefix``),
                 its two files, and the card (``ModelCard``)
    preprocess   image bytes -> the model's input (Pillow + numpy), the same for training
    onnx_file    the exported graph's contract (input, outputs, metadata) and its onnxruntime
                 session (``OnnxFile``); a detector's outputs as ``Detection`` lists
    served       ``ServedModel``: an artifact answering with ``Prediction`` lists

Nothing here imports torch or torchvision, directly or through another module,
so a serving process starts in well under a second: import-linter checks it
(``pyproject.toml``) and ``tests/unit/test_boundaries.py`` imports this
package and the hosting unit in a fresh interpreter to see that torch stays out.
The package itself imports nothing, so naming the artifact layout costs no
numpy or onnxruntime.
"""
