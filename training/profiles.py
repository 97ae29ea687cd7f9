"""Trainer profiles: the NB201 protocol and the shorter, labelled development schedules.

The Python definitions are canonical (the package works without the conf/ tree); the Hydra YAMLs in
conf/trainer/ mirror them, and a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainerProfile", "PROFILES", "get_profile", "load_profile_yaml", "ProfileError"]


class ProfileError(ValueError):
    """Unknown profile name or a YAML that does not validate."""


class TrainerProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    full_protocol: bool = Field(False, description="True only for the NB201 200-epoch recipe; reports label the rest")
    epochs: int = Field(gt=0)
    batch_size: int = Field(256, gt=0)
    lr: float = Field(0.1, gt=0)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    crop_padding: int = Field(4, ge=0)
    flip: bool = True
    subset: int | None = Field(None, gt=0, description="keep the first n examples of each split")
    eval_batch_size: int = Field(1024, gt=0)
    channels_last: bool | None = Field(None, description="None: the trainer decides (channels_last; measured faster on CPU too)")
    deterministic: bool = True
    time_limit_s: float | None = Field(None, gt=0)
    nan_check_every: int = Field(20, gt=0, description="steps between host syncs that look for a non-finite loss")
    compile: bool | None = Field(None, description="torch.compile the model for training steps; None: on when the "
                                                    "run has at least 1000 steps, where the compile time pays off")


PROFILES: dict[str, TrainerProfile] = {
    "nb201": TrainerProfile(name="nb201", full_protocol=True, epochs=200),
    "short": TrainerProfile(name="short", epochs=12),
    # For CPUs and tests, sized on digits (1078 training images of 8x8): the NB201 ResNet skeleton
    # reaches ~97% validation accuracy in ~10 s on 2 cores. A smaller batch gives enough steps; a
    # 1-pixel crop padding is 4 at 32x32 scale; no flip, since digits are not mirror-symmetric.
    "smoke": TrainerProfile(name="smoke", epochs=8, batch_size=64, crop_padding=1, flip=False, subset=2000,
                            eval_batch_size=512),
}


def load_profile_yaml(path: str | Path) -> TrainerProfile:
    from omegaconf import OmegaConf  # hydra-core's config library; imported late to keep imports light

    try:
        data = OmegaConf.to_container(OmegaConf.load(Path(path)), resolve=True)
        return TrainerProfile.model_validate(data)
    except Exception as e:  # noqa: BLE001 - any parse/validation problem is a profile error
        raise ProfileError(f"{path}: not a valid trainer profile: {e}") from e


def get_profile(profile: str | TrainerProfile | Mapping, **overrides) -> TrainerProfile:
    """A profile by name (built-in), by YAML path, from a Hydra/dict config, or as given; then overrides."""
    if isinstance(profile, TrainerProfile):
        p = profile
    elif isinstance(profile, Mapping):  # a dict or Hydra's DictConfig (cfg.trainer)
        try:
            p = TrainerProfile.model_validate({str(k): v for k, v in profile.items()})
        except ValueError as e:
            raise ProfileError(f"not a valid trainer profile: {e}") from e
    elif profile in PROFILES:
        p = PROFILES[profile]
    elif str(profile).endswith((".yaml", ".yml")):
        p = load_profile_yaml(profile)
    else:
        raise ProfileError(f"unknown trainer profile '{profile}'; valid names: {', '.join(sorted(PROFILES))}")
    return p.model_copy(update=overrides) if overrides else p
