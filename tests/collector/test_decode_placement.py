"""Where a request is decoded and mapped (pipeline.decode_where_cheapest): a usual body on
the event loop itself, a large or compressed one in a worker thread."""

from __future__ import annotations

import asyncio
import gzip
import threading

import pytest

from collector_service.ingest.decode import DecodeError, decompress
from collector_service.ingest.pipeline import INLINE_DECODE_BYTES, Format, decode_where_cheapest


def _thread_of_decode(body: bytes, encoding: str | None) -> tuple[int, int, bytes]:
    """(the event loop's thread, the thread that decoded, what it decoded)."""

    def decode(payload: bytes, fmt: Format, content_encoding: str | None) -> tuple[int, bytes]:
        return threading.get_ident(), decompress(payload, content_encoding, 2 * INLINE_DECODE_BYTES)

    async def main() -> tuple[int, int, bytes]:
        where, decoded = await decode_where_cheapest(decode, body, "protobuf", encoding)
        return threading.get_ident(), where, decoded

    return asyncio.run(main())


@pytest.mark.parametrize("size", [0, 280_000, INLINE_DECODE_BYTES])
@pytest.mark.parametrize("encoding", [None, "identity"])
def test_a_usual_uncompressed_body_is_decoded_on_the_event_loop(size: int,
                                                                encoding: str | None) -> None:
    loop_thread, decoded_on, decoded = _thread_of_decode(b"x" * size, encoding)
    assert decoded_on == loop_thread
    assert decoded == b"x" * size


def test_a_body_past_the_bound_is_decoded_in_a_worker_thread() -> None:
    body = b"x" * (INLINE_DECODE_BYTES + 1)
    loop_thread, decoded_on, decoded = _thread_of_decode(body, None)
    assert decoded_on != loop_thread
    assert decoded == body


def test_a_compressed_body_is_decoded_in_a_worker_thread_however_small() -> None:
    body = b"y" * 1000
    loop_thread, decoded_on, decoded = _thread_of_decode(gzip.compress(body), "gzip")
    assert decoded_on != loop_thread
    assert decoded == body


@pytest.mark.parametrize("body,encoding", [(b"x" * 10, None),
                                           (b"x" * (INLINE_DECODE_BYTES + 1), None),
                                           (b"not gzip", "gzip")])
def test_a_decoding_error_reaches_the_caller_from_either_place(body: bytes,
                                                                encoding: str | None) -> None:
    def decode(payload: bytes, fmt: Format, content_encoding: str | None) -> bytes:
        decompress(payload, content_encoding, 2 * INLINE_DECODE_BYTES)
        raise DecodeError("the request is not an ExportTraceServiceRequest")

    with pytest.raises(DecodeError, match=r"not valid gzip|not an ExportTraceServiceRequest"):
        asyncio.run(decode_where_cheapest(decode, body, "protobuf", encoding))
