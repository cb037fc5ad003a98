from __future__ import annotations

from typing import Literal

from pydantic import Field

from editing.editors.base import EditorConfig


class FTConfig(EditorConfig):
    """FT-L: a few Adam steps on one MLP projection, the change bounded elementwise."""

    module: str | None = Field(None, description="Dotted name of the nn.Linear to tune; unset = by depth below.")
    layer_fraction: float = Field(0.66, ge=0.0, le=1.0, description="Relative depth of the tuned block.")
    projection: Literal["gate_proj", "up_proj", "down_proj"] = Field("down_proj", description="MLP projection.")
    steps: int = Field(25, ge=1, le=1000, description="Most optimisation steps per batch.")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate.")
    norm_constraint: float = Field(
        5e-3, gt=0, description="Bound on every entry of the change (L-infinity), as in FT-L."
    )
    stop_loss: float = Field(0.05, ge=0, description="Stop once the mean target NLL is below this.")
    seed: int = Field(0, description="Seed (the optimisation is deterministic; kept for the record).")
