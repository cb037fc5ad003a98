"""Processes that hold the model: the writer (edits, rollbacks, replay) and query answering."""
