"""The package version, in a leaf module: library code reads it from here, never from the package
face (``horm/__init__``), so no module below the CLI depends on everything the face names."""

__version__ = "0.1.0"
