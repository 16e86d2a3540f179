"""Shared fixtures: see the ``fix_*`` plugins."""

pytest_plugins = ["tests.fix_db", "tests.fix_collector", "tests.fix_s3",
                  "tests.fix_pg_instance", "tests.fix_collector_process", "tests.fix_tls"]
