"""The wire contract every process shares, with no torch and no I/O: protocol models, errors and
their HTTP mapping, Settings, log context and logging setup, and which fact an edit is about."""
