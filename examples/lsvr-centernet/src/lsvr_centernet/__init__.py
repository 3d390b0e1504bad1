"""lsvr_centernet: CenterNet ("Objects as Points", Zhou et al., arXiv 1904.07850) as an lsvr plugin.

Importing the package imports neither torch nor any lsvr module: the plugin registers through
:mod:`lsvr_centernet.plugin` and every component module imports core only from ``lsvr_core.api``.
"""

__version__ = "0.1.0"
