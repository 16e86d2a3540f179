"""Forwarding: pass every stored request on to an upstream OTLP endpoint.

With it X-Ray sits inline in an existing trace pipeline (Jaeger, Tempo, another
OpenTelemetry Collector) without delaying or failing its own storage.
"""
