"""Editor registry: `register_editor(...)` is called once in each editor package's __init__."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contract.errors import UnknownEditorError

if TYPE_CHECKING:
    from editing.editors.base import Editor, EditorConfig
    from editing.host import ModelHost


@dataclass(frozen=True)
class EditorEntry:
    name: str
    config_cls: type[EditorConfig]
    editor_cls: type[Editor]


_REGISTRY: dict[str, EditorEntry] = {}
_DISCOVERED = False


def register_editor(*, name: str, config_cls: type[EditorConfig], editor_cls: type[Editor]) -> None:
    from editing.editors.base import NAME_RE

    if not NAME_RE.match(name):
        raise ValueError(f"editor names are lowercase snake case, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name].editor_cls is not editor_cls:
        raise ValueError(f"an editor called {name!r} is already registered")
    _REGISTRY[name] = EditorEntry(name=name, config_cls=config_cls, editor_cls=editor_cls)


def _discover() -> None:
    """Import every package under editing.editors once; each registers what it provides."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import editing.editors as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg:
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _DISCOVERED = True


def editor_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_editor(name: str) -> EditorEntry:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownEditorError(
            f"unknown editor {name!r}; registered: {', '.join(sorted(_REGISTRY))}", field="editor"
        ) from None


def build_editor(name: str, *, host: ModelHost, overrides: dict[str, Any] | None = None) -> Editor:
    """Instantiate a registered editor with its validated config, attached to the host."""
    entry = get_editor(name)
    config = entry.config_cls.model_validate(overrides or {})
    editor = entry.editor_cls(host=host, config=config)
    editor.attach()
    return editor
