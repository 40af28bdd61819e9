"""The foundation every layer builds on: the user-error type, registries, typed config parsing,
crash-safe writes, text tables, lazy re-exports and the version. Imports nothing heavy.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._config": ("ConfigError", "bounded", "parse", "to_data",),
    "._errors": ("MtnasError", "did_you_mean", "first_few", "first_line",),
    "._factory": ("load_factory",),
    "._io": ("atomic_write_bytes", "atomic_write_text",),
    "._lazy": ("lazy_exports",),
    "._registry": ("Registry",),
    "._text": ("fmt", "format_table",),
    "._version": ("__version__",),
})
