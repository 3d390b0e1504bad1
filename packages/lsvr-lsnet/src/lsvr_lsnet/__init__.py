"""lsvr_lsnet: LSNet (Duan et al., arXiv 2104.04899) for boxes, contours and keypoints (importing it never
imports torch)."""

__version__ = "0.1.0"
