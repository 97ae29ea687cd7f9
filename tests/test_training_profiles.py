"""Trainer profiles: the NB201 protocol values, and the Hydra YAMLs mirror the Python ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.profiles import PROFILES, ProfileError, TrainerProfile, get_profile, load_profile_yaml

CONF = Path(__file__).resolve().parents[1] / "conf" / "trainer"


def test_nb201_protocol_values() -> None:
    p = PROFILES["nb201"]
    assert (p.epochs, p.batch_size, p.lr, p.momentum, p.nesterov, p.weight_decay) == (200, 256, 0.1, 0.9, True, 5e-4)
    assert p.label_smoothing == 0 and p.crop_padding == 4 and p.flip and p.full_protocol
    assert PROFILES["short"].epochs == 12 and not PROFILES["short"].full_protocol
    assert PROFILES["smoke"].subset and not PROFILES["smoke"].full_protocol


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_yaml_mirrors_python(name: str) -> None:
    assert load_profile_yaml(CONF / f"{name}.yaml") == PROFILES[name]
    assert get_profile(str(CONF / f"{name}.yaml")) == PROFILES[name]


def test_no_stray_yaml() -> None:
    assert {p.stem for p in CONF.glob("*.yaml")} == set(PROFILES)


def test_get_profile_forms_and_errors(tmp_path: Path) -> None:
    assert get_profile("short", epochs=3).epochs == 3 and PROFILES["short"].epochs == 12
    assert get_profile({"name": "x", "epochs": 2}) == TrainerProfile(name="x", epochs=2)
    from omegaconf import OmegaConf

    assert get_profile(OmegaConf.load(CONF / "short.yaml")) == PROFILES["short"]  # Hydra's cfg.trainer
    with pytest.raises(ProfileError, match="epochs"):
        get_profile({"name": "x", "epochs": 0})
    with pytest.raises(ProfileError, match="valid names: nb201, short, smoke"):
        get_profile("long")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nepochs: 2\nlearning_rate: 3\n")
    with pytest.raises(ProfileError, match="learning_rate"):
        load_profile_yaml(bad)
