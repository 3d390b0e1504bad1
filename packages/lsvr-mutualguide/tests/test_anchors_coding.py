"""Anchors (spec §2 "Anchors", §10 d) and SSD box coding (§2 "Box coding")."""

from __future__ import annotations

import math

import torch

from lsvr_mutualguide.anchors import anchor_shapes, generate_anchors, reference_grids
from lsvr_mutualguide.box_coding import decode, encode

R2 = math.sqrt(2.0)


def test_anchor_counts_at_320_and_512() -> None:
    assert len(generate_anchors(reference_grids(320, 4), (320, 320))) == 12_750
    assert len(generate_anchors(reference_grids(512, 5), (512, 512))) == 32_736


def test_first_location_and_level_bases_at_320() -> None:
    anchors = generate_anchors(reference_grids(320, 4), (320, 320), 24.0)
    first = anchors[:6]
    assert torch.allclose(first[:, :2], torch.tensor([4.0, 4.0]).expand(6, 2))
    expected_wh = torch.tensor([[24, 24], [24 * R2, 24 / R2], [24 / R2, 24 * R2],
                                [24 * R2, 24 * R2], [48, 24], [24, 48]], dtype=torch.float32)
    torch.testing.assert_close(first[:, 2:], expected_wh)
    # second cell of row 0 is one stride (8 px) to the right: row-major order, anchors innermost
    torch.testing.assert_close(anchors[6:12, :2], torch.tensor([12.0, 4.0]).expand(6, 2))
    # level 3 (stride 64, 5x5 grid) starts after 6 * (1600 + 400 + 100) anchors with base 192 px
    lvl3 = anchors[6 * 2100: 6 * 2100 + 6]
    torch.testing.assert_close(lvl3[:, :2], torch.tensor([32.0, 32.0]).expand(6, 2))
    assert lvl3[0, 2] == 192.0


def test_sizes_are_clamped_to_the_image_like_the_reference() -> None:
    anchors = generate_anchors(reference_grids(320, 4), (320, 320), 24.0)
    assert anchors[:, 2:].max() == 320.0  # sqrt(2) * 192 * sqrt(2) = 384 > 320 is clamped
    last = anchors[-6:]  # level 3 base 192: (271.5, 271.5) stays, 384 x 192 -> 320 x 192
    torch.testing.assert_close(last[4, 2:], torch.tensor([320.0, 192.0]))
    torch.testing.assert_close(anchor_shapes(10.0)[3], torch.tensor([10 * R2, 10 * R2]))


def test_encode_matches_the_formula_and_round_trips() -> None:
    anchors = torch.tensor([[50.0, 40.0, 20.0, 10.0]])
    box = torch.tensor([[42.0, 36.0, 62.0, 48.0]])  # centre (52, 42), size (20, 12)
    t = encode(box, anchors)
    expected = torch.tensor([[(52 - 50) / (0.1 * 20), (42 - 40) / (0.1 * 10), 0.0, math.log(12 / 10) / 0.2]])
    torch.testing.assert_close(t, expected)
    gen = torch.Generator().manual_seed(0)
    anchors = torch.rand(100, 4, generator=gen) * 100 + 1
    xy = torch.rand(100, 2, generator=gen) * 200
    boxes = torch.cat([xy, xy + torch.rand(100, 2, generator=gen) * 80 + 1], 1)
    torch.testing.assert_close(decode(encode(boxes, anchors), anchors), boxes, atol=1e-3, rtol=1e-5)
    offsets = torch.randn(100, 4, generator=gen)
    torch.testing.assert_close(encode(decode(offsets, anchors), anchors), offsets, atol=1e-4, rtol=1e-4)
