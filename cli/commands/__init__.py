"""Sub-commands of `factpatch` (one module each: HELP, add_arguments, run)."""
