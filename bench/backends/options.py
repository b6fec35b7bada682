"""What every backend's options model shares; each backend declares its own model beside its class."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """No unknown options, no coercion ("yes" is not a boolean), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
