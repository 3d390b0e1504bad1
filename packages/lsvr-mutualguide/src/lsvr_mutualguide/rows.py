"""The README rows that lsvr reproduces, recipe by recipe, with their published numbers (torch-free).

Sources: the v1 tables (spec §1, ``a192256:README.md:22-54``; the VOC "mAP" is the mean over IoU 0.50:0.95 of the
VOC07 11-point AP) and the HEAD (v2) table (``HEAD:README.md:25-38``, COCO val2017 at 640). A recipe whose name
ends in ``_baseline`` is the row without mutual guidance (max-IoU matching, ``assigner: iou``).
"""

from __future__ import annotations

# recipe -> (table and row as the README writes it, published numbers)
ROWS: dict[str, tuple[str, str]] = {
    "voc0712_shufflenet_fpn_320_baseline": ("VOC07 | ShuffleNetV2 FPN 320", "mAP 51.7 AP50 77.0 AP75 55.5"),
    "voc0712_shufflenet_fpn_320": ("VOC07 | ShuffleNetV2 FPN MG 320", "mAP 52.8 AP50 77.3 AP75 56.6"),
    "voc0712_vgg16_ssd_320_baseline": ("VOC07 | VGG16 SSD 320", "mAP 54.1 AP50 80.1 AP75 58.3"),
    "voc0712_vgg16_ssd_320": ("VOC07 | VGG16 SSD MG 320", "mAP 56.2 AP50 80.4 AP75 61.4"),
    "voc0712_vgg16_fpn_320_baseline": ("VOC07 | VGG16 FPN 320", "mAP 55.2 AP50 80.2 AP75 59.6"),
    "voc0712_vgg16_fpn_320": ("VOC07 | VGG16 FPN MG 320", "mAP 57.7 AP50 81.1 AP75 62.9"),
    "voc0712_vgg16_rfb_320_baseline": ("VOC07 | VGG16 RFB 320", "mAP 55.6 AP50 80.9 AP75 59.6"),
    "voc0712_vgg16_rfb_320": ("VOC07 | VGG16 RFB MG 320", "mAP 57.9 AP50 81.5 AP75 62.6"),
    "voc0712_vgg16_pafpn_320_baseline": ("VOC07 | VGG16 PAFPN 320", "mAP 58.1 AP50 81.7 AP75 63.3"),
    "voc0712_vgg16_pafpn_320": ("VOC07 | VGG16 PAFPN MG 320", "mAP 59.5 AP50 82.2 AP75 64.1"),
    "voc0712_repvgg_a2_pafpn_320_baseline": ("VOC07 | RepVGG-A2 PAFPN 320", "mAP 60.0 AP50 83.1 AP75 65.1"),
    "voc0712_repvgg_a2_pafpn_320": ("VOC07 | RepVGG-A2 PAFPN MG 320", "mAP 61.8 AP50 83.7 AP75 68.1"),
    "voc0712_repvgg_a2_pafpn_mixup_320": ("VOC07 | RepVGG-A2 + MixUp PAFPN MG 320", "mAP 62.4 AP50 84.2 AP75 68.2"),
    "coco_vgg16_ssd_320_baseline": ("COCO val | VGG16 SSD 320", "AP 31.1 AP50 48.9 AP75 32.7"),
    "coco_vgg16_ssd_320": ("COCO val | VGG16 SSD MG 320", "AP 32.0 AP50 49.3 AP75 33.9"),
    "coco_vgg16_fpn_320_baseline": ("COCO val | VGG16 FPN 320", "AP 32.3 AP50 50.3 AP75 34.0"),
    "coco_vgg16_fpn_320": ("COCO val | VGG16 FPN MG 320", "AP 33.6 AP50 50.8 AP75 35.7"),
    "coco_vgg16_rfb_320_baseline": ("COCO val | VGG16 RFB 320", "AP 33.4 AP50 51.6 AP75 35.1"),
    "coco_vgg16_rfb_320": ("COCO val | VGG16 RFB MG 320", "AP 34.6 AP50 52.0 AP75 36.8"),
    "coco_vgg16_pafpn_320_baseline": ("COCO val | VGG16 PAFPN 320", "AP 33.9 AP50 51.9 AP75 35.7"),
    "coco_vgg16_pafpn_320": ("COCO val | VGG16 PAFPN MG 320", "AP 35.3 AP50 52.4 AP75 37.3"),
    "coco_repvgg_a2_pafpn_320": ("COCO val | RepVGG-A2 PAFPN MG 320", "AP 36.2 AP50 53.6 AP75 38.5"),
    "coco_vgg16_fpn_512_baseline": ("COCO val | VGG16 FPN 512", "AP 37.1 AP50 56.5 AP75 39.5"),
    "coco_vgg16_fpn_512": ("COCO val | VGG16 FPN MG 512", "AP 38.2 AP50 56.6 AP75 41.0"),
    "coco_vgg16_pafpn_512_baseline": ("COCO val | VGG16 PAFPN 512", "AP 38.5 AP50 57.6 AP75 41.0"),
    "coco_vgg16_pafpn_512": ("COCO val | VGG16 PAFPN MG 512", "AP 39.4 AP50 57.5 AP75 42.3"),
    "coco_v2_cspdarknet_075_640": ("HEAD COCO val 640 | cspdarknet-0.75",
                                   "AP 43.0 AP50 61.1 AP75 46.2 APs 24.2 APm 50.0 APl 59.9"),
    "coco_v2_cspdarknet_050_640": ("HEAD COCO val 640 | cspdarknet-0.5",
                                   "AP 40.4 AP50 58.4 AP75 43.3 APs 21.0 APm 46.4 APl 58.0"),
    "coco_v2_resnet18_640": ("HEAD COCO val 640 | resnet18",
                             "AP 40.4 AP50 58.5 AP75 43.3 APs 19.9 APm 46.5 APl 58.9 (ImageNet init, not SWSL)"),
}

# recipes that are no README row: CPU smoke runs on ../shared/data and a size the README does not report
OTHER: dict[str, str] = {
    "voc0712_vgg16_fpn_512": "VGG16 + FPN, MG v1, VOC07+12 at 512 (no README row)",
    "voc_sample": "ShuffleNetV2 + FPN, MG v1, on ../shared/data/voc2012_sample (short CPU run)",
    "coco_mini": "ShuffleNetV2 + FPN, MG v1, on ../shared/data/coco_mini (short CPU run)",
    "voc_sample_rfb": "ShuffleNetV2 + narrow RFB, MG v1, on ../shared/data/voc2012_sample (short CPU run)",
    "coco_mini_rfb": "ShuffleNetV2 + narrow RFB, MG v1, on ../shared/data/coco_mini (short CPU run)",
    "coco_v2_cspdarknet_100_640": "MG v2 (HEAD) CSPDarknet-1.0 + PAFPN, COCO at 640 (no README number)",
    "voc_sample_v2": "MG v2 CSPDarknet-0.5 + PAFPN v2 at 320, EMA, on ../shared/data/voc2012_sample (short CPU run)",
    "coco_mini_v2": "MG v2 CSPDarknet-0.5 + PAFPN v2 at 320, EMA, on ../shared/data/coco_mini (short CPU run)",
    "voc_sample_mixup": "ShuffleNetV2 + FPN, MG v1 + MixUp, on ../shared/data/voc2012_sample (short CPU run)",
}


def summaries() -> dict[str, str]:
    """One line per recipe for ``lsvr recipes``: the README row and its published numbers."""
    out = {name: f"README {row}: {numbers}" for name, (row, numbers) in ROWS.items()}
    return {**out, **OTHER}
