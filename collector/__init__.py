"""hotspot-monitor collector: the central side (inventory, test server, Prometheus, Alertmanager)."""
