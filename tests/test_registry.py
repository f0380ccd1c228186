from __future__ import annotations

import pytest

from kdbench.models import MODELS
from kdbench.registry import Registry, UnknownNameError, nearest_first


def test_unknown_name_suggests_the_nearest_and_lists_all_nearest_first() -> None:
    with pytest.raises(UnknownNameError) as caught:
        MODELS.get("resnet21")
    message = str(caught.value)
    assert message.startswith("Unknown model 'resnet21'. Did you mean 'resnet20'? Available: resnet20, ")
    assert set(MODELS.names()) <= set(message.split("Available: ")[1].split(", "))


def test_far_names_get_no_suggestion() -> None:
    with pytest.raises(UnknownNameError) as caught:
        MODELS.get("transformer")
    assert "Did you mean" not in str(caught.value)


def test_aliases_and_spellings_resolve_to_one_name() -> None:
    for spelling in ("resnet20", "ResNet20", "ResNet-20", "RESNET_20"):
        assert MODELS.canonical(spelling) == "resnet20"
    assert MODELS.display("resnet20") == "ResNet20"


def test_registering_a_name_twice_is_an_error() -> None:
    registry: Registry = Registry("thing")
    registry.register("a")(object())
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(object())


def test_nearest_first_orders_by_edit_distance() -> None:
    assert nearest_first("kdd", ["fitnet", "kd", "at"])[0] == "kd"


def test_a_typo_beats_an_abbreviation_and_the_nearer_number_wins() -> None:
    assert nearest_first("kdd", ["kdsvd", "dkd", "kd"])[0] == "kd"
    assert nearest_first("resnet57", ["ResNet50", "resnet56", "resnet8"])[0] == "resnet56"
    assert nearest_first("ckpt", ["checkpoint", "schedule", "seed"])[0] == "checkpoint"
