"""The MoE adaptors' subjects: re-exported from `editing.subjects` (torch-free, shared with the guard
and the edit log)."""

from editing.subjects import SubjectIndex, infer_subject, normalise

__all__ = ["SubjectIndex", "infer_subject", "normalise"]
