#!/usr/bin/env python3
"""check_modelfile_safetensors.py: reads the weights of a polytask model file
with nothing but the Python standard library, following the safetensors
format (https://github.com/huggingface/safetensors#format), to show that
Python tools can load what polytask writes.

Run it by hand (make test does not run it):

    python3 tests/unit/check_modelfile_safetensors.py MODEL.ptm

It checks the polytask frame (magic, version, lengths, CRC-32, "PTEN"),
then parses the safetensors section exactly as safetensors does: an
8-byte little-endian header size N, N bytes of JSON (starting with '{',
possibly padded with spaces), then the data buffer, which the tensors'
data_offsets must cover without holes or overlaps. It prints the
metadata and each tensor's name, shape, and first values, and exits 1
with a message on any problem. With the safetensors package installed,
safetensors.torch.load(st_bytes) on the same slice gives the same tensors.
"""
import json
import struct
import sys
import zlib

MAGIC = b"PTMODEL\0"
VERSION = 1
DTYPE_SIZES = {"F32": 4}


def fail(path, msg):
    sys.exit(f"{path}: {msg}")


def read_frame(path, buf):
    if len(buf) < 40:
        fail(path, "truncated")
    if buf[:8] != MAGIC:
        fail(path, "not a polytask model file (bad magic)")
    version, flags, meta_len, st_len = struct.unpack_from("<IIQQ", buf, 8)
    if version != VERSION:
        fail(path, f"format version {version}, this script reads {VERSION}")
    if 32 + meta_len + st_len + 8 != len(buf):
        fail(path, "lengths in the header do not match the file size")
    crc, end = struct.unpack_from("<I4s", buf, len(buf) - 8)
    if end != b"PTEN":
        fail(path, "end marker missing")
    if zlib.crc32(buf[:-8]) != crc:
        fail(path, "checksum mismatch: file is corrupted")
    if flags != 0:
        fail(path, f"unknown flags {flags:#x}")
    meta = json.loads(buf[32:32 + meta_len].decode("utf-8"))
    if not isinstance(meta, dict):
        fail(path, "metadata is not a JSON object")
    return meta, buf[32 + meta_len:32 + meta_len + st_len]


def read_safetensors(path, st):
    """Returns {name: (shape, [floats])}, parsed the way safetensors does."""
    if len(st) < 8:
        fail(path, "safetensors section too short")
    (n,) = struct.unpack_from("<Q", st, 0)
    if n > len(st) - 8 or n > 100_000_000:
        fail(path, f"safetensors header size {n} out of range")
    raw = st[8:8 + n]
    if not raw.startswith(b"{"):
        fail(path, "safetensors header does not start with '{'")

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            fail(path, "duplicate tensor name")
        return dict(pairs)

    header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_dups)
    data = st[8 + n:]
    header.pop("__metadata__", None)
    tensors, spans = {}, []
    for name, info in header.items():
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            fail(path, f"tensor {name!r}: unsupported dtype {dtype!r}")
        count = 1
        for d in shape:
            if not isinstance(d, int) or d < 0:
                fail(path, f"tensor {name!r}: bad shape {shape}")
            count *= d
        if not 0 <= begin <= end <= len(data) or end - begin != count * DTYPE_SIZES[dtype]:
            fail(path, f"tensor {name!r}: data_offsets {[begin, end]} do not fit shape {shape}")
        spans.append((begin, end, name))
        tensors[name] = (shape, list(struct.unpack_from(f"<{count}f", data, begin)))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            fail(path, f"tensor {name!r}: hole or overlap in the data buffer")
        pos = end
    if pos != len(data):
        fail(path, "data buffer not fully covered by tensors")
    return tensors


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} MODEL.ptm")
    path = sys.argv[1]
    with open(path, "rb") as f:
        buf = f.read()
    meta, st = read_frame(path, buf)
    tensors = read_safetensors(path, st)
    print("metadata:", json.dumps(meta, ensure_ascii=False))
    for name, (shape, values) in tensors.items():
        head = ", ".join(f"{v:g}" for v in values[:6])
        print(f"{name}: F32 {shape} [{head}{', ...' if len(values) > 6 else ''}]")
    print(f"ok: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
