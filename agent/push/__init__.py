"""Remote-write push for sites behind NAT, with a durable on-disk queue."""
