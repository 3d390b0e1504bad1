"""``lsvr export``: ONNX and ``torch.export`` (pt2) files of a trained detector, and a runner for them.

The exported graph maps a preprocessed image batch to the head's raw outputs (:mod:`.module`); decoding and
NMS run in Python through the head's own ``decode_outputs`` (:mod:`.runtime`), so predictions of an exported
model equal eager ones. A sidecar JSON (:mod:`.sidecar`) records the preprocessing, class names, versions and
the resolved config.
"""
