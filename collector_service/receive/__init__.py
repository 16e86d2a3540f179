"""Transports: the OTLP/gRPC and OTLP/HTTP receivers and the artifact endpoint.

They decode requests, translate errors into OTLP statuses and call the one ingest
path; they know nothing about Postgres. Imports point down: ``receive`` uses
``ingest``, ``store`` and ``telemetry``; nothing below imports ``receive``.
"""
