#!/usr/bin/python3
"""Write the libFuzzer seed corpus tests/fuzz/corpus/ from tests/http/corpus.json.

    /usr/bin/python3 tests/fuzz/make_seeds.py

One file per corpus entry, named after its id, holding the request bytes
exactly (pauses dropped). Entries over 20,000 bytes (the 1 MiB bodies) are
left out: the limit paths they reach are reached by short inputs under the
fuzzer's tiny-limits pass. Files of entries no longer in the corpus are
removed. Run it after changing corpus.json and commit the result.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from httpcorpus import load_corpus, request_bytes  # noqa: E402

MAX_SEED = 20000


def main():
    out = HERE / "corpus"
    out.mkdir(exist_ok=True)
    wanted = {}
    for entry in load_corpus():
        data = request_bytes(entry)
        if len(data) <= MAX_SEED:
            wanted[entry["id"]] = data
    for old in out.iterdir():
        if old.is_file() and old.name not in wanted:
            old.unlink()
    for name, data in wanted.items():
        path = out / name
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    total = sum(len(d) for d in wanted.values())
    print(f"{len(wanted)} seeds, {total} bytes in {out}")


if __name__ == "__main__":
    main()
