"""The ops_triton plugin: registers its layers with lsvr (torch-free)."""

from __future__ import annotations

from lsvr_core.api import ComponentSpec, hookimpl

_LAYER_KWARGS = ("factory kwargs: in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, "
                 "groups=1, bias=True, offset_groups=1")


@hookimpl
def lsvr_layers() -> list[ComponentSpec]:
    return [
        ComponentSpec("layer", "dcn_v1", None, "lsvr_ops_triton.modules:build_dcn_v1",
                      f"deformable conv v1 with its own zero-initialised offset conv; {_LAYER_KWARGS}"),
        ComponentSpec("layer", "dcn_v2", None, "lsvr_ops_triton.modules:build_dcn_v2",
                      f"modulated deformable conv v2 (offset + sigmoid mask conv, zero-initialised); {_LAYER_KWARGS}"),
    ]


@hookimpl
def lsvr_env_info() -> dict[str, str]:
    """``lsvr env``: what the kernel dispatcher would do on this machine (imports torch; only ``env`` calls it)."""
    from lsvr_ops_triton.dispatch import backend_report

    return {f"kernel {key}": value for key, value in backend_report().items()}
