"""CUDA-only checks (``gpu`` marker): the LESA block with the compiled Triton attention matches the PyTorch
path, and a LESA-R50 Mask R-CNN training step at 1024 x 1024, batch 2, fits in 16 GB (issue goal)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("stride", [1, 2])
def test_block_triton_matches_torch_path(stride: int) -> None:
    from lsvr_lesa.block import LESA

    torch.manual_seed(0)
    ours = LESA(256, (64, 64), heads=8, stride=stride, backend="triton").cuda().train()
    ref = LESA(256, (64, 64), heads=8, stride=stride, backend="reference").cuda().train()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 256, 48, 40, device="cuda", requires_grad=True)
    outs = []
    for block in (ours, ref):
        out = block(x)
        outs.append([out, *torch.autograd.grad(out.square().mean(), [x, block.binary.rel_h, block.binary.qkv.weight])])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3)


def test_mask_rcnn_train_step_at_1024_batch_2_fits_in_16_gb() -> None:
    from lsvr_core.config import load_config
    from lsvr_core.models.detector import build_detector
    from lsvr_core.plugins import get_plugin_manager
    from lsvr_core.structures import Batch
    from lsvr_core.testing import make_targets

    manager = get_plugin_manager()
    cfg = load_config("lesa:mask_rcnn_lesa_r50_1024_20e_coco", manager)
    model = build_detector(cfg, manager).cuda().train()
    boxes = torch.tensor([[100.0, 120, 400, 500], [500, 300, 900, 1000], [50, 700, 200, 980]])
    targets = [make_targets(boxes, torch.tensor([0, 5, 17]), (1024, 1024), image_id=i) for i in range(2)]
    batch = Batch(torch.rand(2, 3, 1024, 1024) * 255, targets).to("cuda")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
    assert all(torch.isfinite(v) for v in losses.values())
    assert torch.cuda.max_memory_allocated() < 16 * 2**30, torch.cuda.max_memory_allocated() / 2**30
