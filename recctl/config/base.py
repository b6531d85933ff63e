"""The strict base class every config section derives from."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class BaseConfig(BaseModel):
    """A config section: unknown keys are refused, so a typo is an error, not a silent no-op.

    The check runs before field validation so the message can list the allowed keys and
    suggest the closest one (``no_component`` -> ``no_components``).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = list(cls.model_fields)
            unknown = [key for key in data if key not in allowed]
            if unknown:
                key = str(unknown[0])
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(f"unknown key '{key}'{hint}; allowed keys: {', '.join(allowed)}")
        return data
