"""The package version, in a module of its own: ``asccl/__init__.py`` and modules that
record it (metric checkpoints) import it from here, so no module imports the package root."""

__version__ = "0.1.0"
