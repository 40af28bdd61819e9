"""A plugin module that fails while importing (for the plugin-loading tests; not a test module)."""

raise RuntimeError("this plugin is broken")
