"""The package version, in a module of its own so that any module can read it without importing the package
root (whose lazy names lead to the API)."""

__version__ = "0.1.0"
