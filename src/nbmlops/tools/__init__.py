"""Tools for developing the template: benchmarks, the load test, scaled-up data, the browser for
the site test, the documentation site's hook. Nothing outside tools/ imports them."""
