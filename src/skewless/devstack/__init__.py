"""Throw-away local services for the demo, the benchmarks and a developer's machine.

Not used by the platform's own code paths (the jobs, the DAGs, the online client or server):
a deployment points ``redis_url`` at its own Redis.
"""
