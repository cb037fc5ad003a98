"""Editor plug-ins. Each sub-package registers its editors when imported (see editing.registry)."""
