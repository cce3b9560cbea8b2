"""hotspot-monitor agent: measures a public wifi site's links and exposes the results to Prometheus."""

__version__ = "0.1.0"
