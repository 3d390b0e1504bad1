"""LSNet's losses: ``cross_iou`` (spec §4.2)."""
