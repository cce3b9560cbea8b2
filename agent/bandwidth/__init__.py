"""Bandwidth engines: ways of measuring goodput against a server, all returning a BandwidthTest."""
