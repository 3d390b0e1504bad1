"""Hybrid Task Cascade (HTC), a built-in two-stage head beside Mask R-CNN: ``head`` (the cascade), ``modules``
(box predictor, mask head with information flow, fused semantic head), ``sampling`` (per-stage RoI sampling)."""
