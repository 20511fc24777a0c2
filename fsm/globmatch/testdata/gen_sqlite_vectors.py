#!/usr/bin/env python3
"""Generate sqlite_vectors.jsonl: random GLOB cases evaluated by real SQLite.

Each line is a JSON array [pattern, topic, matched] where matched is
`CAST(topic AS TEXT) GLOB pattern` (0 or 1) as computed by the SQLite
library Python links against (3.40.1 when the file was generated). Patterns
and topics are valid UTF-8 without NUL, the domain where this package's
rules and SQLite's agree.

Usage: python3 gen_sqlite_vectors.py [count] [seed] > sqlite_vectors.jsonl
"""
import json
import random
import sqlite3
import sys

ALPHABET = list("-^!][*?/\\{},abcz") + ["é", "ü", "😀"]
TOPIC_ALPHABET = list("-^!][*?/\\{},abcxz") + ["é", "ü", "😀"]


def random_pattern(rng):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))


def instantiate(rng, pattern):
    """A topic likely to (nearly) match pattern."""
    out = []
    for ch in pattern:
        r = rng.random()
        if ch == "*":
            out.extend(rng.choice(TOPIC_ALPHABET) for _ in range(rng.randint(0, 2)))
        elif ch in "?[" or r < 0.1:
            out.append(rng.choice(TOPIC_ALPHABET))
        elif r < 0.15:
            continue
        else:
            out.append(ch)
    return "".join(out)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = random.Random(seed)
    db = sqlite3.connect(":memory:")
    seen = set()
    while len(seen) < count:
        p = random_pattern(rng)
        if rng.random() < 0.3:
            t = "".join(rng.choice(TOPIC_ALPHABET) for _ in range(rng.randint(0, 5)))
        else:
            t = instantiate(rng, p)
        if (p, t) in seen:
            continue
        seen.add((p, t))
        (m,) = db.execute("SELECT CAST(? AS TEXT) GLOB ?", (t, p)).fetchone()
        print(json.dumps([p, t, m], ensure_ascii=False))


if __name__ == "__main__":
    main()
