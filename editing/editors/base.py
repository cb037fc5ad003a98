"""The Editor interface: compute without touching the model, apply, undo as data."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import Tensor

from contract.protocol import EditSpec
from editing.artifacts import EditArtifact

if TYPE_CHECKING:
    from editing.host import ModelHost


class EditorConfig(BaseModel):
    """Base of every editor's config: strict and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class EditBatch:
    """Edits applied together as one revision."""

    batch_id: str
    edits: tuple[EditSpec, ...]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(e.prompt, e.target) for e in self.edits]


@dataclass(frozen=True)
class RestoreParams:
    """Undo for weight editors: the fp32 masters and editor state from before the edit."""

    params: dict[str, Tensor]
    editor_state: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class RemoveExperts:
    """Undo for adaptor editors: drop what these batches added."""

    batch_ids: tuple[str, ...]


Undo = RestoreParams | RemoveExperts


class Editor(ABC):
    """An editing method bound to one resident model.

    `compute` is pure (weights and editor state unchanged; new state travels in the artifact),
    `apply` is the only mutating call and returns its exact inverse.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    config_cls: ClassVar[type[EditorConfig]]

    def __init__(self, *, host: ModelHost, config: EditorConfig) -> None:
        self.host = host
        self.config = config

    def attach(self) -> None:
        """One-time set-up on the model (wrapping a layer, loading a checkpoint); tracks parameters."""
        self.host.track(self.tracked_parameters())

    @abstractmethod
    def tracked_parameters(self) -> list[str]:
        """Names of the model parameters this editor may change."""

    @abstractmethod
    def compute(self, batch: EditBatch) -> EditArtifact:
        """Derive the artifact of a batch from the current model, changing nothing."""

    @abstractmethod
    def apply(self, artifact: EditArtifact) -> Undo:
        """Apply a (finite, checked) artifact and return what undoes it exactly."""

    def restore(self, undo: Undo) -> None:
        if not isinstance(undo, RestoreParams):
            raise TypeError(f"{type(self).__name__} cannot undo {type(undo).__name__}")
        self.host.set_masters(undo.params)
        self.load_state_tensors(undo.editor_state)

    def state_tensors(self) -> dict[str, Tensor]:
        """Editor state that belongs in snapshots and checksums (normaliser, adaptor)."""
        return {}

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")

    def reset(self) -> None:
        """Back to revision 0: base weights, initial editor state."""
        self.host.reset_to_base()

    def diagnostics(self) -> dict[str, object]:
        """Editor-specific numbers for offline evaluation (routing histograms, …); never used to serve."""
        return {}

    def describe(self) -> dict[str, object]:
        return {"editor": self.name, "version": self.version, "config": self.config.model_dump(mode="json")}

    def _artifact(self, tensors: dict[str, Tensor], **meta: object) -> EditArtifact:
        return EditArtifact(editor=self.name, version=self.version, tensors=tensors, meta=dict(meta))

    def _check_artifact(self, artifact: EditArtifact) -> None:
        if artifact.editor != self.name:
            raise ValueError(f"artifact of {artifact.editor!r} given to {self.name!r}")
        artifact.check_finite()


NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
