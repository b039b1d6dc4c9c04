"""Every setting says what it does: the settings reference page is generated from the
``description`` of each ``Settings`` field, so a field without one is a hole in the docs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from distillery.settings import Settings


def undescribed(model: type[BaseModel]) -> list[str]:
    """Names of the model's fields whose description is missing or blank."""
    return [name for name, field in model.model_fields.items()
            if not (field.description or "").strip()]


def test_every_setting_has_a_description() -> None:
    missing = undescribed(Settings)
    assert not missing, (
        f"settings without a description (add Field(..., description=...) in "
        f"distillery/settings.py): {', '.join(missing)}")


def test_a_missing_or_blank_description_is_named() -> None:
    class Toy(BaseModel):
        described: int = Field(1, description="A setting that says what it does.")
        bare: int = 2
        blank: int = Field(3, description="  ")

    assert undescribed(Toy) == ["bare", "blank"]
