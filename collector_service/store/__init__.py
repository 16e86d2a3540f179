"""Storage: the Postgres pool and its SQL, migrations, the embedded server, artifacts.

The only package that imports psycopg or boto3. It depends on nothing else of the
collector but ``config``, ``errors`` and ``telemetry``.
"""
