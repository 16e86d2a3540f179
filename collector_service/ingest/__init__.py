"""Decode, map and offload: from an OTLP request to rows ready to commit.

``decode`` parses bytes, ``mapping`` (pure) turns spans into rows, ``offload`` moves
oversized values to artifact storage, and ``pipeline`` runs one request through them
into the store. Uses ``store`` and ``telemetry``; never ``receive`` or ``cli``.
"""
