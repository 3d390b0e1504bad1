"""Built-in components over torchvision (factories of lsvr-core's own plugin) and the :class:`Detector`.

Modules: :mod:`~lsvr_core.models.resnet` (backbone), :mod:`~lsvr_core.models.fpn` (neck),
:mod:`~lsvr_core.models.fcos` (head), :mod:`~lsvr_core.models.losses`, :mod:`~lsvr_core.models.norm` and
:mod:`~lsvr_core.models.detector` (``build_detector(cfg, manager)``). Nothing is imported here, so loading one
factory does not build the others.
"""
