#!/usr/bin/python3
"""Writes the python-zstandard vectors of zstddict_test.go.

Run with Debian's python3-zstandard (0.20, libzstd 1.5.4), the library the
Python client uses: /usr/bin/python3 gen.py
Frames are written as the reference peers write them: no checksum, no
content size, no dictionary id.
"""
import hashlib
import json
import random

import zstandard

rng = random.Random(7)


def message(i):
    return json.dumps({
        "event": "cache_bust",
        "key": "user:%d:profile" % rng.randrange(100000),
        "seq": i,
        "region": "eu-west-%d" % rng.randrange(3),
        "reason": rng.choice(["updated", "deleted", "renamed"]),
    }).encode()


samples = [message(i) for i in range(2000)]
full = zstandard.train_dictionary(16384, samples)
raw = b"".join(samples[:40])
messages = [message(10000 + i) for i in range(8)] + [b"\x00" * 1024]


def frames(zdict, level):
    c = zstandard.ZstdCompressor(level=level, dict_data=zdict, write_checksum=False,
                                 write_content_size=False, write_dict_id=False)
    return [c.compress(m) for m in messages]


out = {
    "zstd_version": zstandard.ZSTD_VERSION,
    "full_dict": full.as_bytes().hex(),
    "raw_dict": raw.hex(),
    "messages": [m.hex() for m in messages],
    "full_frames": [f.hex() for f in frames(full, 3)],
    "full_frames_level10": [f.hex() for f in frames(full, 10)],
    "raw_frames": [f.hex() for f in frames(zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT), 3)],
}
big = b"".join(samples) * 4
c = zstandard.ZstdCompressor(level=3, write_checksum=False, write_content_size=False, write_dict_id=False)
chunks = []
ch = c.chunker(chunk_size=65536)
for i in range(0, len(big), 100000):
    chunks.extend(ch.compress(big[i:i + 100000]))
chunks.extend(ch.finish())
out["stream_plain"] = {"length": len(big), "sha512": hashlib.sha512(big).hexdigest(), "frame": b"".join(chunks).hex()}
with open("python_zstd.json", "w") as f:
    json.dump(out, f, indent=1)
