"""The foundation every layer builds on: the user-error type, registries, typed config parsing,
bounded reading of files (text, JSON, YAML), crash-safe writes, text tables, lazy re-exports and
the version. Imports nothing heavy.
"""

from mtnas.core._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "._cache": ("CACHE_ENV", "DamagedEntryWarning", "cache_dir", "read_checked", "seal", "unseal", "write_checked",),
    "._config": ("ConfigError", "FLOAT32_MAX", "MAX_INT", "MAX_SEED", "bounded", "check_limits", "parse", "to_data",),
    "._errors": ("MtnasError", "MtnasWarning", "did_you_mean", "first_few", "first_line", "one_line", "short_repr", "short_text",),
    "._inputs": ("MAX_JSON_DEPTH", "MAX_JSON_INT_DIGITS", "load_json_text", "read_text_file", "regular_file",),
    "._interrupts": ("interrupts_deferred",),
    "._process": ("process_ended", "process_gone", "process_gone_on", "process_start",),
    "._io": ("atomic_write_bytes", "atomic_write_text", "create_exclusive", "naming", "replace_files",),
    "._lazy": ("lazy_exports",),
    "._paths": ("FOLDER_NAME", "NAME", "check_name", "inside", "is_folder_name", "is_name",),
    "._plugins": ("PLUGINS_ENV", "PluginRegistry", "load_plugins", "plugin_modules",),
    "._registry": ("Registry",),
    "._text": ("fmt", "format_table",),
    "._yaml": (
        "SPACE_MAX_BYTES", "YAML_MAX_CHARS", "YAML_MAX_DEPTH", "YAML_MAX_INT_DIGITS", "YAML_MAX_NODES", "load_yaml_text",
        "read_yaml_file",
    ),
    "._version": ("__version__",),
})
