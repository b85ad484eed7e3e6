"""Molecules domain (registered through the `sciformer.domains` entry point in pyproject.toml)."""
from domains.molecules.domain import MoleculesDomain

__all__ = ["MoleculesDomain"]
