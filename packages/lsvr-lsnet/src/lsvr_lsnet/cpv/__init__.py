"""Corner point verification (CPV) for the LSNet bbox task: corner pooling, corner heatmaps, the semantic
(foreground) branch and corner snapping at inference (LSNet spec §5)."""
