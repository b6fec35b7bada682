"""Options each backend accepts in a suite; validated in the parent, so nothing heavy is imported here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PytorchOptions(Options):
    attn_implementation: Literal["eager", "sdpa"] = "eager"
