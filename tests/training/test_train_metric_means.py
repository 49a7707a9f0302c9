"""``train_metric``'s logged means are means over pairs: a short last validation batch
weighs by its pairs (``evaluate``), and a train row with ``grad_accum > 1`` averages all the
step's micro-batches, not only the last."""

from __future__ import annotations

from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch
from tests.training.test_train_metric import config

from asccl.metric import ASCCLMetric
from asccl.metric.model import MetricHealth
from asccl.training.history import read_log
from asccl.training.train_metric import evaluate, train_metric


class _PairValues(torch.nn.Module):
    """Stands in for the metric: each pair's loss is its neutral crop's mean value and its
    cosines are that value per stage (positive) and minus it (negative); a batch reports
    their means, as ``ASCCLMetric`` does."""

    def forward(self, x, y, generator=None, health=False):
        per = x.flatten(1).double().mean(1)
        stages = per.mean().expand(4)
        return SimpleNamespace(loss=per.mean(), health=MetricHealth(stages, -stages))


def test_a_short_last_validation_batch_weighs_by_its_pairs():
    # 17 pairs in batches of 16: 16 pairs of 0 then 1 pair of 10. The mean over pairs is
    # 10/17; the old mean of batch means, (0 + 10) / 2 = 5
    values = [0.0] * 16 + [10.0]
    data = [(torch.full((3, 2, 2), v), torch.zeros(3, 2, 2)) for v in values]
    settings = SimpleNamespace(seed=0, batch_size=16, workers=0, val_batches=0)
    row = evaluate(_PairValues(), data, settings, lambda t: t, nullcontext)
    # sums of 17 exact small numbers in float64, one division: 1e-12 is loose; the float32
    # per-stage columns (the log's precision) round 10/17 to within 2^-24 relative
    assert row["loss"] == pytest.approx(10 / 17, rel=1e-12)
    assert row["positive_cosine_1"] == pytest.approx(10 / 17, rel=2**-23)
    assert row["negative_cosine"] == pytest.approx(-10 / 17, rel=2**-23)
    assert row["gap"] == pytest.approx(20 / 17, rel=2**-22)
    # val_batches still counts batches: the first batch alone is all zeros
    first = evaluate(_PairValues(), data, SimpleNamespace(**{**vars(settings), "val_batches": 1}),
                     lambda t: t, nullcontext)  # fmt: skip
    assert first["loss"] == 0.0


@pytest.mark.slow  # ~30 s on 2 busy cores: one real training step and two validations
def test_a_train_row_averages_every_micro_batch_of_its_step(stage1_64, tmp_path, monkeypatch):
    # record what each training forward returned; the first step's logged row must be the
    # mean of its two micro-batches' (equal size: 4 pairs each), not the second's alone
    seen = []
    original = ASCCLMetric.forward

    def recording(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if self.training:  # validation runs in eval mode
            seen.append((output.loss.item(), output.health))
        return output

    monkeypatch.setattr(ASCCLMetric, "forward", recording)
    changes = {"batch_size": 8, "grad_accum": 2, "max_steps": 1, "checkpoint_every": 100,
               "batchnorm": "frozen"}  # fmt: skip
    train_metric(config(stage1_64, tmp_path / "run", **changes))
    assert len(seen) == 2 and all(health is not None for _, health in seen)
    (train,) = [row for row in read_log(tmp_path / "run" / "log.csv") if row["split"] == "train"]
    (loss_a, health_a), (loss_b, health_b) = seen
    assert abs(loss_a - loss_b) > 1e-3  # the two micro-batches differ: the test can tell
    # each logged value: the float64 mean of two float32 numbers, cast to float32 (the
    # cosines; 2^-24 relative) and written to 6 significant digits (5e-6 relative): 1e-5
    close = dict(rel=1e-5, abs=1e-12)
    assert float(train["loss"]) == pytest.approx((loss_a + loss_b) / 2, **close)
    for stage in range(4):
        for sign in ("positive", "negative"):
            a, b = (getattr(h, f"{sign}_cosine")[stage].item() for h in (health_a, health_b))
            assert float(train[f"{sign}_cosine_{stage + 1}"]) == pytest.approx((a + b) / 2, **close)
