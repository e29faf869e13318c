"""Loading tests/http/corpus.json (stdlib only, no pytest: tests/fuzz/make_seeds.py uses it too).

The schema is described in test_corpus.py's docstring.
"""

import hashlib
import json
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus.json"


def build(parts):
    """Request/body parts -> list of steps: bytes, or ("pause", seconds).

    A part is a str (bytes as Latin-1 code points), {"repeat": part(s), "times": n}
    or {"pause": seconds}. Adjacent bytes are merged."""
    steps = []

    def emit(item):
        if isinstance(item, bytes):
            if steps and isinstance(steps[-1], bytes):
                steps[-1] += item
            else:
                steps.append(item)
        else:
            steps.append(item)

    def walk(part):
        if isinstance(part, str):
            emit(part.encode("latin-1"))
        elif isinstance(part, list):
            for p in part:
                walk(p)
        elif "repeat" in part:
            inner = build(part["repeat"])
            if any(not isinstance(s, bytes) for s in inner):
                raise ValueError(f"a pause inside a repeat: {part!r}")
            emit(b"".join(inner) * part["times"])
        elif "pause" in part:
            steps.append(("pause", float(part["pause"])))
        else:
            raise ValueError(f"unknown request part {part!r}")

    walk(parts)
    return steps


def request_bytes(entry):
    """The entry's request as one bytes object (pauses dropped)."""
    return b"".join(s for s in build(entry["request"]) if isinstance(s, bytes))


def load_corpus(path=CORPUS):
    doc = json.loads(Path(path).read_text())
    entries = doc["entries"]
    seen = set()
    for e in entries:
        if e["id"] in seen:
            raise ValueError(f"duplicate corpus id {e['id']}")
        seen.add(e["id"])
    return entries


def show(data, limit=200):
    data = bytes(data)
    if len(data) <= limit:
        return repr(data)
    return (f"<{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}, "
            f"starting {data[:120]!r}>")
