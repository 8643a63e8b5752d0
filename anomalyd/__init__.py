"""anomalyd: a self-hosted anomaly-detection daemon for time series."""

__version__ = "0.1.0"
