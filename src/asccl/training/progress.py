"""Where a run stands (:class:`Progress`, saved in every checkpoint) and its progress bar."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm


@dataclass
class Progress:
    """Optimiser steps done, whole epochs done, and batches drawn from the current epoch
    (what a resumed run skips before it draws its next batch)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True) -> tqdm:
    """The one progress bar of a training run: ``initial`` of ``total`` steps done; shown
    by the main process only (``enabled``)."""
    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled)
