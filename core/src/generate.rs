//! Seeded generators of Kubernetes scenarios (random ones for differential tests, large ones for benchmarks).
