"""sandan's benchmarks: `make bench` (bench.pipeline), `make bench-memory` (bench.memory), `make bench-codec`."""
