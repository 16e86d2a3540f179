"""Generate the collector's Python code for X-Ray's own messages from ``proto/``.

    python3 dev.py proto              # regenerate into collector_service/ingest/proto/
    python proto/generate.py OUT_DIR  # generate elsewhere (the test diffs the two)

Needs ``grpcio-tools`` (pinned in the ``dev`` extra), whose bundled ``protoc`` fixes the
output byte for byte.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "collector_service" / "ingest" / "proto"
PROTOS = ("xray/v1/events.proto",)
GENERATED = ("xray/v1/events_pb2.py", "xray/v1/events_pb2.pyi")
"""Files the generator writes, relative to its output folder."""


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every file of ``PROTOS``; return the files written."""
    from grpc_tools import protoc  # only the generator needs grpcio-tools

    well_known = resources.files("grpc_tools").joinpath("_proto")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {', '.join(PROTOS)}")
    return [out_dir / name for name in GENERATED]


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT_DIR
    for path in generate(target):
        print(path)
