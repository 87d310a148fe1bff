"""gankit's built-in plugins: losses, regularizers, architectures and datasets.

Each module registers through the ``gankit`` entry-point group exactly as a third-party
distribution would, and uses only the public API (``import gankit``) plus numpy and
pydantic; none imports a deep-learning framework.
"""
