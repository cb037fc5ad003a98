"""The typed record every loader produces (the field's vocabulary, one to one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.protocol import EditSpec


@dataclass(frozen=True)
class LocalityCase:
    """An unrelated prompt and the answer the model should keep giving."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class EditCase:
    """One fact correction with its evaluation probes.

    `target_true` is the old answer when the dataset gives one (CounterFact, zsRE answers).
    `source` says where it came from: `file:index`.
    """

    case_id: str
    prompt: str
    target_new: str
    target_true: str | None = None
    subject: str | None = None
    rephrases: tuple[str, ...] = ()
    locality: tuple[LocalityCase, ...] = ()
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def to_spec(self, *, with_probes: bool = True) -> EditSpec:
        """The API's edit request for this case."""
        return EditSpec(
            prompt=self.prompt,
            target=self.target_new,
            subject=self.subject,
            rephrases=list(self.rephrases) if with_probes else [],
            locality=[c.prompt for c in self.locality] if with_probes else [],
            metadata={"case_id": self.case_id, "source": self.source},
        )
