"""The package version (read by pyproject.toml, written into run folders and arch.json)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
