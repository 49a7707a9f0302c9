"""Losses for training SPFEM generators with a frozen ASCCL metric."""

from asccl.losses.asccl_loss import ASCCLLoss

__all__ = ["ASCCLLoss"]
