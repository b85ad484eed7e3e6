"""Time-series domain: forecasting (iTransformer / Gateformer-style with exogenous tokens and conformal
quantiles) and variable-length classification. Found by the registry as the `domains/timeseries` folder."""
from domains.timeseries.domain import TimeseriesDomain

__all__ = ["TimeseriesDomain"]
