"""Developer tools: code generation, the local stack (`make run`), benchmarks.

Nothing here is part of a production deployment.
"""
