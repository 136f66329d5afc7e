"""The ``opacus`` recipe (work in progress)."""
