"""What every backend's options model shares; each backend declares its own model beside its class."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, model_serializer


class Options(BaseModel):
    """No unknown options, no coercion ("yes" is not a boolean), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()
    """Options added after cases were first recorded: left out of a case's options while at their default, so that
    the case's id and every cache key stay those of the runs made before the option existed."""

    @model_serializer(mode="wrap")
    def _omit_added_defaults(self, handler):
        data = handler(self)
        for name in self.OMITTED_AT_DEFAULT:
            if getattr(self, name) == type(self).model_fields[name].default:
                data.pop(name, None)
        return data
