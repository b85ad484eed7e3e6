"""Time-series domain: forecasting (iTransformer / Gateformer-style with exogenous tokens and conformal
quantiles) and variable-length classification. Registered through the `sciformer.domains` entry point."""
from domains.timeseries.domain import TimeseriesDomain

__all__ = ["TimeseriesDomain"]
