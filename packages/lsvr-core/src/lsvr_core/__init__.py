"""lsvr-core: the plugin system, config, CLI and engine of lsvr.

Importing this package (and its ``specs``, ``hookspecs``, ``plugins`` and ``config`` modules) never imports
torch, so the configuration and discovery verbs of the CLI stay fast.
"""

__version__ = "0.1.0"
