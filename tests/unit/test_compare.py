"""Choosing the shipped tower: validation figures only, by EER, then one-shot, then d′, then order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
from torch import nn

from training.compare import Assessment, Contender, Entry, baseline_config, choose
from training.config import LossKind, MinerKind, TrainConfig
from training.export import Calibrated, Trained
from training.splits import DataSplits, ImageSet
from twinstream.images.preprocess import InputSpec

SPEC = InputSpec(height=16, width=16, channels=1, invert=False, mean=0.0, std=1.0)
EMPTY = ImageSet([], np.zeros(0, np.int64), ())


def _assessed(
    name: Contender, eer: float, oneshot: float, d_prime: float, test_eer: float = 0.5
) -> Assessment:
    entry = Entry(name, "", Trained(nn.Identity(), [], {}), DataSplits("x", SPEC, EMPTY, EMPTY, EMPTY),
                  TrainConfig(dataset="digits"))  # fmt: skip
    calibrated = Calibrated(cast(Any, None), cast(Any, None), 1.0)  # ranking reads only the figures
    validation = {"eer": eer, "oneshot_5way_every_enrolment": oneshot, "d_prime": d_prime}
    return Assessment(entry, calibrated, validation, {"eer": test_eer}, {})


def test_the_lowest_validation_eer_wins_whatever_the_test_figures_say() -> None:
    better_on_test = _assessed(Contender.PRETRAINED, eer=0.02, oneshot=1.0, d_prime=9.0, test_eer=0.0)
    better_on_val = _assessed(Contender.FINE_TUNED, eer=0.01, oneshot=0.9, d_prime=3.0, test_eer=0.3)
    assert choose([better_on_test, better_on_val]) is better_on_val


def test_equal_eers_go_to_the_better_every_enrolment_one_shot_then_the_larger_d_prime() -> None:
    a = _assessed(Contender.PRETRAINED, eer=0.0, oneshot=0.98, d_prime=9.0)
    b = _assessed(Contender.FINE_TUNED, eer=0.0, oneshot=1.0, d_prime=4.0)
    assert choose([a, b]) is b
    c = _assessed(Contender.CONV4_SCRATCH, eer=0.0, oneshot=1.0, d_prime=5.0)
    assert choose([a, b, c]) is c


def test_a_full_tie_goes_to_the_earliest_contender() -> None:
    first = _assessed(Contender.PRETRAINED, eer=0.0, oneshot=1.0, d_prime=6.0)
    second = _assessed(Contender.FINE_TUNED, eer=0.0, oneshot=1.0, d_prime=6.0)
    assert choose([first, second]) is first


def test_the_conv4_baseline_keeps_the_objective_and_seed_and_trains_from_scratch_on_a_budget() -> None:
    cfg = TrainConfig(dataset="att-faces", data_dir=str(Path("/data")), loss=LossKind.CONTRASTIVE,
                      miner=MinerKind.HARD, seed=3, epochs=7, lr=2e-5, baseline_budget_s=45)  # fmt: skip
    base = baseline_config(cfg)
    assert (base.architecture, base.pretrained, base.freeze) == ("conv4", False, "none")
    assert base.embedding_dim == 64
    assert (base.loss, base.miner, base.seed, base.data_dir) == (cfg.loss, cfg.miner, 3, cfg.data_dir)
    assert (base.time_budget_s, base.lr, base.baseline_budget_s) == (45, 1e-3, 0.0)
