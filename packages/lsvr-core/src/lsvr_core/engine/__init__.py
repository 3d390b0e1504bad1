"""The training and evaluation engine (method-agnostic: it drives whatever backbone, neck and head the
config names).

Modules, in the order a run uses them: :mod:`api` (what the CLI verbs call), :mod:`distributed` (torchrun
environment, DDP helpers, ``--nproc-per-node``), :mod:`workdir` (files of a run), :mod:`build` (datasets,
model, evaluator from the config), :mod:`data` (seeded, grouped, resumable batches), :mod:`optim` and
:mod:`schedule` (optimizer, precision, LR), :mod:`trainer` (the loop and its guard rails),
:mod:`checkpoint`, :mod:`evaluate` and :mod:`progress`.
"""
