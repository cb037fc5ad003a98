"""The `factpatch` command (`cli.main`): one module per sub-command in `cli/commands/`, the
operators' HTTP client in `cli/operator/`, and embedded mode (`cli.embedded`: the API and a writer
in one process)."""
