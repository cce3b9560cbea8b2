"""What the tests and the benchmarks share: real servers on loopback, agent processes, lab links."""
