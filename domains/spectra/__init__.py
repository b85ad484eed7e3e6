"""Spectra domain (registered through the `sciformer.domains` entry point in pyproject.toml)."""
from domains.spectra.domain import SpectraDomain

__all__ = ["SpectraDomain"]
