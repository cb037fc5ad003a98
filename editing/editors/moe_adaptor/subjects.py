"""The MoE adaptors' subjects: re-exported from `contract.subjects` (torch-free, shared with the guard
and the edit log)."""

from contract.subjects import SubjectIndex, infer_subject, normalise

__all__ = ["SubjectIndex", "infer_subject", "normalise"]
