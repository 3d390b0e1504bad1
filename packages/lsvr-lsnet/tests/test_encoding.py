"""Cross-vector encoding (LSNet spec §1): the spec's example, the decode rule and the round trip."""

from __future__ import annotations

import torch

from lsvr_lsnet.encoding import (
    decode_cross_vectors,
    decode_landmarks,
    encode_cross_targets,
    extreme_points_to_boxes,
    landmarks_to_boxes,
)


def test_spec_example() -> None:
    # §1: (dx, dy) = (3, -2) -> (up, down, left, right) = (2, 0.4, 0.6, 3)
    out = encode_cross_targets(torch.tensor([[3.0, -2.0]]), alpha=0.2)
    torch.testing.assert_close(out, torch.tensor([[2.0, 0.4, 0.6, 3.0]]))


def test_zero_offset_is_positive_direction() -> None:
    out = encode_cross_targets(torch.tensor([[0.0, 0.0], [-1.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.2]]))


def test_decode_rule_ties_go_to_first_slot() -> None:
    vec = torch.tensor([[1.0, 1.0, 2.0, 2.0], [0.5, 3.0, 4.0, 1.0]])
    torch.testing.assert_close(decode_cross_vectors(vec), torch.tensor([[-2.0, -1.0], [-4.0, 3.0]]))


def test_round_trip() -> None:
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randn(50, 7, 2, generator=gen) * 10
    offsets[0] = 0.0  # exact zeros round-trip too
    offsets[1, :, 0] = 0.0
    for alpha in (0.0, 0.2, 0.9):
        torch.testing.assert_close(decode_cross_vectors(encode_cross_targets(offsets, alpha)), offsets)


def test_decode_landmarks_scales_by_stride_and_adds_anchor() -> None:
    anchors = torch.tensor([[16.0, 32.0], [0.0, 0.0]])
    offsets = torch.tensor([[[1.0, -2.0]], [[-0.5, 0.25]]])  # cells
    out = decode_landmarks(encode_cross_targets(offsets), anchors, torch.tensor([8.0, 16.0]))
    torch.testing.assert_close(out, torch.tensor([[[24.0, 16.0]], [[-8.0, 4.0]]]))


def test_boxes_from_landmarks() -> None:
    # top, left, bottom, right, centre
    pts = torch.tensor([[[11.0, 6.0], [7.0, 10.5], [10.5, 15.0], [14.0, 9.5], [100.0, 100.0]]])
    torch.testing.assert_close(extreme_points_to_boxes(pts), torch.tensor([[7.0, 6.0, 14.0, 15.0]]))
    torch.testing.assert_close(landmarks_to_boxes(pts, "extreme"), torch.tensor([[7.0, 6.0, 14.0, 15.0]]))
    # min/max ignores the trailing centre landmark
    torch.testing.assert_close(landmarks_to_boxes(pts, "minmax"), torch.tensor([[7.0, 6.0, 14.0, 15.0]]))
