"""One class per method (issue 64): a method that stacks is its ``Algorithm``, found from its
registry row's name; the algorithm names its settings (a ``MethodSettings``) and its docstring
is its command's help; the command's config is ``method_config(NAME)``, the training config
with the settings mixed in, and it pickles by the method's name."""

from __future__ import annotations

import pickle

import pytest
from click.testing import CliRunner

from raypkg.algorithms import Algorithm, MethodSettings, method_config, stackable, stacked_class
from raypkg.cli import main
from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError
from raypkg.method_registry import METHODS, import_object
from raypkg.recipe_registry import find_recipe


@pytest.mark.parametrize("name", list(stackable()))
def test_a_row_is_a_name_and_its_class_carries_the_rest(name):
    algorithm = import_object(stackable()[name].algorithm)
    assert issubclass(algorithm, Algorithm) and algorithm.name == name
    assert issubclass(algorithm.settings, MethodSettings)
    cls = method_config(name)
    assert issubclass(cls, algorithm.settings) and issubclass(cls, TrainConfig) and cls.__doc__ == algorithm.__doc__
    assert cls.__name__ == algorithm.settings.__name__.removesuffix("Settings") + "Config"


@pytest.mark.parametrize("name", [m.name for m in METHODS if m.made])
def test_the_help_of_effray_run_name_is_its_algorithms_docstring(name):
    first = import_object(stackable()[name].algorithm).__doc__.split("\n")[0]
    help_text = " ".join(CliRunner().invoke(main, ["run", name, "--help"]).output.split())
    assert " ".join(first.split()) in help_text


def test_a_method_config_pickles_by_its_name_alone_or_stacked():
    cls = method_config("ema")
    cfg = pickle.loads(pickle.dumps(cls(ema_half_life=0.5)))
    assert type(cfg) is cls and cfg.ema_half_life == 0.5
    stacked = stacked_class(cls, ("infobatch",))
    cfg = pickle.loads(pickle.dumps(stacked(stack=["infobatch"], prune_ratio=0.3)))
    assert type(cfg) is stacked and cfg.prune_ratio == 0.3 and stacked.__name__ == "EmaConfigInfoBatch"


def test_validate_runs_each_members_checks_after_the_training_configs():
    cls = find_recipe("ema+label-smoothing").config_cls
    cls(stack=["label-smoothing"]).validate()
    with pytest.raises(UsageError, match="smoothing must be in"):
        cls(stack=["label-smoothing"], smoothing=1.5).validate()
    with pytest.raises(UsageError, match="ema-half-life must be >= 0"):
        cls(stack=["label-smoothing"], ema_half_life=-1.0).validate()
    with pytest.raises(UsageError, match="epochs"):  # the training config's own checks still run
        cls(stack=["label-smoothing"], epochs=0).validate()


@pytest.mark.parametrize("stack", [("ema", "infobatch"), ("infobatch", "ema")])
def test_a_stack_takes_its_batch_plan_from_the_member_that_has_one_in_either_order(stack):
    assert stacked_class(TrainConfig, stack).BATCH_PLAN == "InfoBatch's pruned epochs"


def test_a_command_default_of_its_own_stays_the_commands():
    assert method_config("progressive-resizing")().model == "resnet20"
    assert find_recipe("train+progressive-resizing").config_cls().model == TrainConfig().model


def test_a_name_that_does_not_stack_has_no_method_config():
    with pytest.raises(UsageError, match="the algorithms that stack are"):
        method_config("coreset")
