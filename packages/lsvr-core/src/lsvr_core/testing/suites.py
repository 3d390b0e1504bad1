"""Conformance suites for backbone, neck, head, assigner and loss components.

Each ``check_*`` builds the component from its factory (a :class:`~lsvr_core.specs.ComponentSpec`, a
``"module:callable"`` string or the callable), runs it on small synthetic inputs and raises
``AssertionError`` with a message naming the broken contract. Call them from pytest::

    def test_my_neck():
        check_neck("my_pkg.neck:build_my_neck", MyNeckConfig(out_channels=64))

They return what they built (and its outputs) for further, component-specific assertions. Factories receive
``registry=manager`` (default: :func:`~lsvr_core.testing.common.default_registry`, every installed plugin), so a
head's nested assigners and losses come from the registry under test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.contracts import ShapeSpec
from lsvr_core.specs import AssignerConfig, BackboneConfig, HeadConfig, LossConfig, NeckConfig
from lsvr_core.structures import NUM_KEYPOINTS, Batch, Predictions
from lsvr_core.testing.common import (
    assert_finite,
    assert_gradients,
    check_config_roundtrip,
    default_registry,
    projection_loss,
    resolve_factory,
)
from lsvr_core.testing.synthetic import feature_size, make_batch, make_features

DEFAULT_BACKBONE_SHAPE = {"c3": ShapeSpec(128, 8), "c4": ShapeSpec(256, 16), "c5": ShapeSpec(512, 32)}
DEFAULT_NECK_SHAPE = {f"p{i}": ShapeSpec(64, 2**i) for i in range(3, 8)}


def _check_output_shape(shape: Any, what: str) -> dict[str, ShapeSpec]:
    assert isinstance(shape, dict) and shape, f"{what}.output_shape() must return a non-empty dict, got {shape!r}"
    for level, spec in shape.items():
        assert isinstance(spec, ShapeSpec), f"{what}.output_shape()[{level!r}] must be a ShapeSpec, got {spec!r}"
        assert spec.channels > 0 and spec.stride > 0, f"{what}.output_shape()[{level!r}] = {spec}: must be positive"
    strides = [s.stride for s in shape.values()]
    assert strides == sorted(strides), f"{what}.output_shape() must list levels fine to coarse, strides {strides}"
    return shape


def _check_features(out: Any, shape: dict[str, ShapeSpec], image_size: tuple[int, int], batch_size: int,
                    what: str) -> None:
    assert isinstance(out, dict), f"{what} must return a dict of feature maps, got {type(out).__name__}"
    assert list(out) == list(shape), (
        f"{what} returned levels {list(out)} but output_shape() declares {list(shape)} (same names, same order)")
    for level, feature in out.items():
        expected = (batch_size, shape[level].channels, *feature_size(image_size, shape[level].stride))
        assert tuple(feature.shape) == expected, (
            f"{what}[{level!r}]: shape {tuple(feature.shape)}, expected {expected} = (B, channels, ceil(H/stride), "
            f"ceil(W/stride)) for input {image_size} and {shape[level]}")
        assert_finite(feature, f"{what}[{level!r}]")


def check_backbone(factory_or_spec: Any, cfg: BackboneConfig, *, image_size: tuple[int, int] = (96, 160),
                   batch_size: int = 2, allow_unused: Iterable[str] = (), manager: Any = None) -> nn.Module:
    """Check a backbone: config round trip; ``output_shape()`` levels, channels and strides match the
    features for a (B, 3, H, W) input; outputs finite; gradients reach every trainable parameter; eval mode is
    deterministic. ``image_size`` should be a multiple of the largest stride unless the backbone handles
    other sizes (then each level must be ``ceil(size / stride)``)."""
    check_config_roundtrip(cfg, "backbone", manager)
    registry = manager or default_registry()
    backbone = resolve_factory(factory_or_spec, "backbone")(cfg, registry=registry)
    what = f"backbone {cfg.type!r}"
    assert isinstance(backbone, nn.Module), f"{what}: factory must return an nn.Module, got {type(backbone).__name__}"
    shape = _check_output_shape(backbone.output_shape(), what)
    images = torch.randn(batch_size, 3, *image_size, generator=torch.Generator().manual_seed(0))
    backbone.train()
    out = backbone(images)
    _check_features(out, shape, image_size, batch_size, what)
    projection_loss(out.values()).backward()
    assert_gradients(backbone, what, allow_unused)
    backbone.zero_grad(set_to_none=True)
    backbone.eval()
    with torch.no_grad():
        a, b = backbone(images), backbone(images)
    for level in a:
        assert torch.equal(a[level], b[level]), f"{what}: eval-mode output {level!r} differs between two calls"
    return backbone


def check_neck(factory_or_spec: Any, cfg: NeckConfig, input_shape: dict[str, ShapeSpec] | None = None, *,
               image_size: tuple[int, int] = (96, 160), batch_size: int = 2, allow_unused: Iterable[str] = (),
               manager: Any = None) -> nn.Module:
    """Check a neck built with ``input_shape`` (default: ResNet-18 c3..c5): config round trip, declared vs
    actual levels, channels and strides, finite outputs, gradients to every trainable parameter and to the
    input features."""
    check_config_roundtrip(cfg, "neck", manager)
    registry = manager or default_registry()
    input_shape = input_shape or DEFAULT_BACKBONE_SHAPE
    neck = resolve_factory(factory_or_spec, "neck")(cfg, input_shape, registry=registry)
    what = f"neck {cfg.type!r}"
    assert isinstance(neck, nn.Module), f"{what}: factory must return an nn.Module, got {type(neck).__name__}"
    shape = _check_output_shape(neck.output_shape(), what)
    features = make_features(input_shape, image_size, batch_size, requires_grad=True)
    neck.train()
    out = neck(features)
    _check_features(out, shape, image_size, batch_size, what)
    projection_loss(out.values()).backward()
    assert_gradients(neck, what, allow_unused)
    assert any(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values()), (
        f"{what}: no gradient reaches the input features")
    return neck


def _check_predictions(preds: Any, batch: Batch, num_classes: int, task: str, what: str) -> None:
    assert isinstance(preds, list) and len(preds) == len(batch.targets), (
        f"{what}.predict must return a list with one Predictions per image ({len(batch.targets)}), got {preds!r:.80}")
    for i, (p, t) in enumerate(zip(preds, batch.targets, strict=True)):
        w = f"{what}.predict()[{i}]"
        assert isinstance(p, Predictions), f"{w}: expected Predictions, got {type(p).__name__}"
        assert p.frame == "input", f"{w}: frame is {p.frame!r}; heads predict in the input frame"
        assert p.image_id == t.image_id, f"{w}: image_id {p.image_id} != the image's {t.image_id}"
        n = len(p)
        assert tuple(p.boxes.shape) == (n, 4), f"{w}: boxes shape {tuple(p.boxes.shape)}, expected ({n}, 4)"
        assert tuple(p.scores.shape) == (n,), f"{w}: scores shape {tuple(p.scores.shape)}, expected ({n},)"
        assert tuple(p.labels.shape) == (n,), f"{w}: labels shape {tuple(p.labels.shape)}, expected ({n},)"
        assert p.labels.dtype == torch.int64, f"{w}: labels dtype {p.labels.dtype}, expected torch.int64"
        assert_finite(p.boxes, f"{w}.boxes")
        if n:
            assert ((p.scores >= 0) & (p.scores <= 1)).all(), f"{w}: scores outside [0, 1]"
            assert ((p.labels >= 0) & (p.labels < num_classes)).all(), f"{w}: labels outside [0, {num_classes})"
            assert (p.boxes[:, 2:] >= p.boxes[:, :2]).all(), f"{w}: boxes are not xyxy (x1 < x0 or y1 < y0)"
        if task == "segm":
            assert p.masks is not None or p.contours is not None, f"{w}: task segm needs masks or contours"
            if p.masks is not None:
                h, wd = t.image_size
                assert p.masks.shape[0] == n and p.masks.shape[1] >= h and p.masks.shape[2] >= wd, (
                    f"{w}: masks shape {tuple(p.masks.shape)} must be (N={n}, >= {h}, >= {wd})")
        if task.startswith("pose"):
            assert p.keypoints is not None and tuple(p.keypoints.shape) == (n, NUM_KEYPOINTS, 3), (
                f"{w}: task {task} needs keypoints of shape ({n}, {NUM_KEYPOINTS}, 3)")
        p.to_original(t)  # must map back without error


def check_head(factory_or_spec: Any, cfg: HeadConfig, input_shape: dict[str, ShapeSpec] | None = None, *,
               num_classes: int = 3, task: str = "bbox", image_size: tuple[int, int] = (96, 160),
               batch: Batch | None = None, allow_unused: Iterable[str] = (), manager: Any = None,
               extra_fields: Iterable[Any] = ()) -> nn.Module:
    """Check a head on random features of ``input_shape`` (default p3..p7, 64 channels) and a synthetic batch
    (:func:`~lsvr_core.testing.synthetic.make_batch`: boxes of three scales incl. a crowd box, an empty padded
    image): training ``forward`` returns finite scalar losses named ``loss*`` whose gradients reach every
    trainable parameter and the features; ``predict`` returns well-formed input-frame :class:`Predictions`
    (segm: masks or contours; pose: keypoints) that map to the original frame; a head with the optional export
    methods reproduces ``predict`` through them (``decode_outputs(export_outputs(f))`` for the batch,
    ``export_postprocess`` for its first image; exactly tied scores may come in any order). ``extra_fields``: declared
    :class:`~lsvr_core.fields.TargetFieldSpec` the head reads from ``Targets.extras``, derived into the batch."""
    check_config_roundtrip(cfg, "head", manager)
    registry = manager or default_registry()
    input_shape = input_shape or DEFAULT_NECK_SHAPE
    head = resolve_factory(factory_or_spec, "head")(cfg, input_shape, num_classes, task, registry=registry)
    what = f"head {cfg.type!r} (task {task})"
    assert isinstance(head, nn.Module), f"{what}: factory must return an nn.Module, got {type(head).__name__}"
    assert callable(getattr(head, "predict", None)), f"{what}: has no predict(features, batch) method"
    batch = batch or make_batch(image_size, num_classes, extra_fields=tuple(extra_fields))
    padded = tuple(batch.images.shape[-2:])
    features = make_features(input_shape, padded, len(batch.targets), requires_grad=True)
    torch.manual_seed(0)
    head.train()
    losses = head(features, batch)
    assert isinstance(losses, dict) and losses, f"{what}: training forward must return a non-empty dict of losses"
    for key, value in losses.items():
        assert key.startswith("loss"), f"{what}: key {key!r} must start with 'loss' (the engine sums those)"
        assert isinstance(value, Tensor) and value.dim() == 0, f"{what}: {key} must be a scalar tensor, got {value!r}"
        assert_finite(value, f"{what} {key}")
    sum(losses.values()).backward()
    assert_gradients(head, what, allow_unused)
    assert any(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values()), (
        f"{what}: no gradient reaches the input features")
    head.zero_grad(set_to_none=True)
    head.eval()
    with torch.no_grad():
        preds = head.predict({k: v.detach() for k, v in features.items()}, batch)
    _check_predictions(preds, batch, num_classes, task, what)
    _check_export_methods(head, {k: v.detach() for k, v in features.items()}, batch, preds, what)
    return head


def _canonical(boxes: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Detections ordered by (score desc, label, box): NMS implementations may order exactly tied scores
    differently."""
    keys = [(-float(s), int(c), *(float(v) for v in b)) for s, c, b in zip(scores, labels, boxes, strict=True)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    idx = torch.tensor(order, dtype=torch.long)
    return boxes.float()[idx], scores.float()[idx], labels.long()[idx]


def _assert_same_detections(want: Predictions, got_boxes: Tensor, got_scores: Tensor, got_labels: Tensor,
                            what: str) -> None:
    assert len(got_boxes) == len(want), f"{what}: {len(got_boxes)} detections, predict gives {len(want)}"
    want_boxes, want_scores, want_labels = _canonical(want.boxes, want.scores, want.labels)
    got_boxes, got_scores, got_labels = _canonical(got_boxes, got_scores, got_labels)
    assert torch.equal(got_labels, want_labels), f"{what}: labels differ from predict's"
    torch.testing.assert_close(got_boxes, want_boxes, atol=1e-3, rtol=1e-5,
                               msg=lambda m: f"{what}: boxes differ from predict's: {m}")
    torch.testing.assert_close(got_scores, want_scores, atol=1e-5, rtol=1e-5,
                               msg=lambda m: f"{what}: scores differ from predict's: {m}")


def _check_export_methods(head: nn.Module, features: dict[str, Tensor], batch: Batch, preds: list[Predictions],
                          what: str) -> None:
    """The optional ``lsvr export`` methods (:class:`~lsvr_core.contracts.Head`) must reproduce ``predict``:
    ``decode_outputs(export_outputs(features), batch)`` for the batch, and ``export_postprocess`` for its first
    image (boxes, scores, labels in predict's order)."""
    export_outputs = getattr(head, "export_outputs", None)
    if not callable(export_outputs):
        return
    with torch.no_grad():
        raw = export_outputs(features)
    assert isinstance(raw, tuple) and raw and all(isinstance(t, Tensor) for t in raw), (
        f"{what}: export_outputs must return a non-empty tuple of tensors")
    decode_outputs = getattr(head, "decode_outputs", None)
    if callable(decode_outputs):
        with torch.no_grad():
            decoded = decode_outputs(raw, batch)
        assert isinstance(decoded, list) and len(decoded) == len(preds), (
            f"{what}: decode_outputs must return one Predictions per image")
        for i, (want, got) in enumerate(zip(preds, decoded, strict=True)):
            _assert_same_detections(want, got.boxes, got.scores, got.labels,
                                    f"{what}: decode_outputs(export_outputs(features))[{i}]")
    export_postprocess = getattr(head, "export_postprocess", None)
    if callable(export_postprocess):
        first = {k: v[:1] for k, v in features.items()}
        meta = batch.targets[0]
        with torch.no_grad():
            out = export_postprocess(export_outputs(first), torch.tensor(meta.image_size, dtype=torch.int64),
                                     torch.tensor(meta.scale, dtype=torch.float32), tuple(batch.images.shape[-2:]))
        assert isinstance(out, dict) and list(out)[:3] == ["boxes", "scores", "labels"], (
            f"{what}: export_postprocess must return a dict starting with boxes, scores, labels")
        _assert_same_detections(preds[0], out["boxes"], out["scores"], out["labels"],
                                f"{what}: export_postprocess (image 0)")


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for name in value.__dataclass_fields__ for t in _tensors(getattr(value, name))]
    return []


def check_assigner(factory_or_spec: Any, cfg: AssignerConfig, call: Callable[[Any], Any], *,
                   manager: Any = None) -> Any:
    """Check an assigner: config round trip; the factory returns a callable; ``call(assigner)`` (which runs
    it on inputs of your choice; pass predictions that require grad) returns tensors that are finite, carry
    no autograd history (targets are constants) and are identical when called twice (deterministic).

    Returns:
        the output of the first ``call``.
    """
    check_config_roundtrip(cfg, "assigner", manager)
    registry = manager or default_registry()
    assigner = resolve_factory(factory_or_spec, "assigner")(cfg, registry=registry)
    what = f"assigner {cfg.type!r}"
    assert callable(assigner), f"{what}: factory must return a callable, got {type(assigner).__name__}"
    first, second = call(assigner), call(assigner)
    a, b = _tensors(first), _tensors(second)
    assert a, f"{what}: call(assigner) returned no tensors"
    assert len(a) == len(b), f"{what}: two calls returned different structures"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert_finite(x, f"{what} output tensor {i}")
        assert not x.requires_grad, f"{what}: output tensor {i} requires grad; compute targets under no_grad"
        assert x.shape == y.shape and torch.equal(x, y), f"{what}: output tensor {i} differs between two calls"
    return first


def check_loss(factory_or_spec: Any, cfg: LossConfig, inputs: tuple[Any, ...], *,
               empty_inputs: tuple[Any, ...] | None = None, expect_scalar: bool = True,
               manager: Any = None) -> Tensor:
    """Check a loss on ``inputs`` (positional arguments, the prediction first): config round trip; finite
    (scalar) output; gradient reaches the prediction; ``loss_weight`` (if the config has one) scales the loss
    linearly; ``avg_factor`` (if ``forward`` takes one) divides the sum; ``empty_inputs`` give a finite loss
    that back-propagates."""
    check_config_roundtrip(cfg, "loss", manager)
    registry = manager or default_registry()
    factory = resolve_factory(factory_or_spec, "loss")
    loss_fn = factory(cfg, registry=registry)
    what = f"loss {cfg.type!r}"
    assert isinstance(loss_fn, nn.Module), f"{what}: factory must return an nn.Module, got {type(loss_fn).__name__}"
    pred = inputs[0].detach().clone().requires_grad_(True)
    value = loss_fn(pred, *inputs[1:])
    if expect_scalar:
        assert isinstance(value, Tensor) and value.dim() == 0, f"{what}: expected a scalar tensor, got {value!r:.80}"
    assert_finite(value, what)
    value.sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all(), f"{what}: no finite gradient for the prediction"
    assert pred.grad.abs().sum() > 0, f"{what}: gradient w.r.t. the prediction is all zero"
    if "loss_weight" in type(cfg).model_fields and cfg.loss_weight > 0:
        doubled_fn = factory(cfg.model_copy(update={"loss_weight": 2 * cfg.loss_weight}), registry=registry)
        doubled = doubled_fn(inputs[0], *inputs[1:])
        assert torch.allclose(doubled, 2 * value.detach(), rtol=1e-5, atol=1e-8), (
            f"{what}: doubling loss_weight gave {doubled.tolist()} instead of 2 x {value.tolist()}")
    if "avg_factor" in inspect.signature(loss_fn.forward).parameters:
        one = loss_fn(inputs[0], *inputs[1:], avg_factor=1.0)
        four = loss_fn(inputs[0], *inputs[1:], avg_factor=4.0)
        assert torch.allclose(four * 4, one, rtol=1e-5, atol=1e-8), (
            f"{what}: avg_factor=4 gave {four.tolist()}, expected avg_factor=1's {one.tolist()} / 4")
    if empty_inputs is not None:
        pred = empty_inputs[0].detach().clone().requires_grad_(True)
        empty = loss_fn(pred, *empty_inputs[1:])
        assert_finite(empty, f"{what} on empty inputs")
        empty.sum().backward()
    return value.detach()
