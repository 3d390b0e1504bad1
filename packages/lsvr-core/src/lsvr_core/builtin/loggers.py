"""Built-in run loggers (the wandb logger), wired through the lifecycle hooks.

The engine issue fills this module in; until then it registers no hook implementations.
"""
