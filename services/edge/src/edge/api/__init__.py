"""The edge's HTTP surface: routes, dependencies, the error mapping, middleware."""
