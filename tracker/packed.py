"""Stored blobs (records, e-mails): written as one zstd frame, read whichever codec wrote them.

zstd is several times zlib's speed at about its size; rows written before it came (tracker
0.1) are zlib streams. The two are told apart by their first bytes.
"""

from __future__ import annotations

import threading
import zlib

import zstandard

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # every zstd frame starts so; a zlib stream with 0x78
ZSTD_LEVEL = 3  # zstd's default


def pack(data: bytes) -> bytes:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        # One per thread, reused: setting up a compressor costs about as much as compressing
        # a record, and a compressor may not be shared between threads.
        compressor = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor.compress(data)


_local = threading.local()


def unpack(blob: bytes) -> bytes:
    """The bytes `pack` (or zlib) stored. Anything else is a ValueError: a row to look at,
    not to guess."""
    data = bytes(blob)
    if data.startswith(ZSTD_MAGIC):
        return zstandard.decompress(data)
    if data[:1] == b"\x78":
        return zlib.decompress(data)
    raise ValueError(f"A stored blob starts with {data[:4].hex()}: neither zstd nor zlib.")
