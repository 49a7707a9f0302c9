"""The template of ``asccl metric export`` (:mod:`asccl.metric.export`).

:mod:`asccl.metric.standalone.asccl_loss_standalone` is the exported module itself, with
asccl's default settings in its constants: plain PyTorch >= 1.7 and numpy, Python 3.8
syntax (``ruff.toml`` here checks it as such), importing nothing from asccl.
"""
