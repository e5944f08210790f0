"""Tools for developing the template: benchmarks, the load test, nbval on rendered notebooks,
scaled-up data. Nothing outside tools/ imports them."""
