"""The training config chooses the tower from the data set, and stays typed and strict."""

from __future__ import annotations

import pytest

from training.config import FACE_ARCHITECTURE, FINE_TUNE_LR, SCRATCH_LR, TrainConfig
from training.freeze import DEFAULT_FACE_FREEZE
from training.train import parser
from twinstream.model.tower import FACE_RESNET


def test_config_and_tower_name_the_face_architecture_alike() -> None:
    assert FACE_ARCHITECTURE == FACE_RESNET


def test_a_face_data_set_fine_tunes_the_pretrained_face_tower_by_default() -> None:
    cfg = TrainConfig(dataset="att-faces")
    assert (cfg.architecture, cfg.embedding_dim, cfg.pretrained) == (FACE_RESNET, 128, True)
    assert (cfg.freeze, cfg.lr, cfg.baseline_budget_s) == (DEFAULT_FACE_FREEZE, FINE_TUNE_LR, 120.0)


def test_other_data_sets_keep_a_conv4_from_scratch() -> None:
    cfg = TrainConfig(dataset="omniglot")
    assert (cfg.architecture, cfg.embedding_dim, cfg.pretrained) == ("conv4", 64, False)
    assert (cfg.freeze, cfg.lr, cfg.baseline_budget_s) == ("none", SCRATCH_LR, 0.0)


def test_a_folder_is_a_face_data_set_when_the_face_architecture_is_asked_for() -> None:
    assert TrainConfig(dataset="folder:/faces", architecture=FACE_RESNET, freeze="levels:3").pretrained
    assert TrainConfig(dataset="folder:/faces").architecture == "conv4"


def test_explicit_choices_win_over_the_recipe() -> None:
    scratch = TrainConfig(dataset="att-faces", architecture="conv4", embedding_dim=32, lr=5e-4)
    assert (scratch.architecture, scratch.embedding_dim, scratch.lr) == ("conv4", 32, 5e-4)
    assert not scratch.pretrained
    unfrozen = TrainConfig(dataset="att-faces", freeze="none", lr=3e-5, baseline_budget_s=0)
    assert (unfrozen.freeze, unfrozen.lr, unfrozen.baseline_budget_s) == ("none", 3e-5, 0.0)
    random_face = TrainConfig(dataset="att-faces", pretrained=False)
    assert (random_face.architecture, random_face.freeze, random_face.lr) == (FACE_RESNET, "none", SCRATCH_LR)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "digits", "freeze": "levels:2"}, "needs a pretrained tower"),
        ({"dataset": "att-faces", "pretrained": False, "freeze": "stem"}, "needs a pretrained tower"),
        ({"dataset": "att-faces", "freeze": "levels:9"}, "levels:N"),
        ({"dataset": "att-faces", "freeze": "trunk"}, "unknown stages"),
        ({"dataset": "att-faces", "embedding_dim": 64}, "128-d"),
        ({"dataset": "att-faces", "baseline_budget_s": -1.0}, ">= 0"),
    ],
)
def test_inconsistent_recipes_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)  # type: ignore[arg-type]


def test_the_resolved_config_round_trips_through_a_plain_dict_and_refuses_unknown_keys() -> None:
    cfg = TrainConfig(dataset="att-faces", freeze="stem,level32")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({**cfg.to_dict(), "freeze_all": True})


def test_the_job_command_line_offers_the_fine_tuning_options() -> None:
    args = vars(parser().parse_args(["--dataset", "att-faces", "--freeze", "levels:3", "--no-pretrained"]))
    assert (args["freeze"], args["pretrained"], args["architecture"]) == ("levels:3", False, "auto")
    assert vars(parser().parse_args(["--baseline-budget-s", "30"]))["baseline_budget_s"] == 30.0
