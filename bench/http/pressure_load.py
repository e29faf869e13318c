#!/usr/bin/python3
"""Load generators of the pressure suite (pressure_suite.py runs them as child processes).

    pressure_load.py normal  --port P --seconds S [--warmup W] [--clients 8] [--gap 0.02]
                             [--timeout 5]
    pressure_load.py hostile --port P --seconds S [--slowloris 2000] [--slow-readers 150]
                             [--big-bytes N] [--read-rate 100000] [--uploads 32]
                             [--upload-bytes 1048576] [--upload-rate 1048576]

Each prints one JSON object on stdout when it ends (by itself, after --seconds).
Standard library only, one thread, non-blocking sockets and a selector: on a
2-core machine shared with the server, the generators must cost little.

normal: --clients keep-alive connections, each sending a request, reading the
  whole answer, then waiting --gap seconds (closed loop). Requests alternate
  GET /small and POST /echo with a 35-byte JSON body. A request's latency runs
  from the first byte sent (or the connect, on a new connection) to the last
  byte of the answer. Failures: a status other than 2xx, the connection closed
  or reset before the whole answer, a connect refused, or no whole answer
  within --timeout seconds; the connection is then closed and the next
  request opens a new one. The first --warmup seconds are not recorded.

hostile: three kinds of connection at once, all to the same server, until
--seconds have passed or SIGTERM comes:
  slowloris     connects, sends the start of a head, then one more byte every
                second (spread over the second); a connection the server closes
                is opened again 0.5 s later (a real attacker keeps its count up).
  slow readers  SO_RCVBUF 4096, GET /big (--big-bytes, streamed by the app),
                read at --read-rate bytes per second each; a finished answer
                is followed by the next request on the same connection.
  uploads       POST /upload with --upload-bytes of body, sent at up to
                --upload-rate bytes per second each (0: as fast as the socket
                takes them), answer checked (the app answers the length it
                read), then the next upload.
"""

import argparse
import errno
import json
import selectors
import signal
import socket
import sys
import time

HOST = "127.0.0.1"
JSON_BODY = b'{"user":"ada","op":"ping","n":1234}'  # 35 bytes
GET_SMALL = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
POST_ECHO = (b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(JSON_BODY)) + JSON_BODY
SLOW_HEAD = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\nX-Dribble: "
TICK = 0.02


class Response:
    """Incremental parser of one HTTP/1.1 answer with Content-Length or chunked."""

    def __init__(self):
        self.buf = bytearray()
        self.status = None
        self.length = None     # body bytes expected (Content-Length)
        self.chunked = False
        self.close = False
        self.head_end = None
        self.body_seen = 0     # for count-only mode (slow readers)

    def feed(self, data, keep=True):
        """Returns True when the answer is complete."""
        if self.head_end is None:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            self.head_end = end + 4
            lines = bytes(self.buf[:end]).split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    self.chunked = True
                elif name == b"connection" and value == b"close":
                    self.close = True
            rest = bytes(self.buf[self.head_end:])
            self.buf = bytearray(rest) if keep else bytearray()
            self.body_seen = len(rest)
        else:
            self.body_seen += len(data)
            if keep:
                self.buf += data
        if self.chunked:
            return bytes(self.buf).endswith(b"0\r\n\r\n")
        if self.length is None:
            return False  # close-delimited: complete only at EOF
        return self.body_seen >= self.length

    def body(self):
        if not self.chunked:
            return bytes(self.buf)
        out, data = bytearray(), bytes(self.buf)
        while data:
            size, _, data = data.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out += data[:n]
            data = data[n + 2:]
        return bytes(out)


def new_socket(rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    err = s.connect_ex((HOST, PORT))
    if err not in (0, errno.EINPROGRESS):
        s.close()
        raise OSError(err, "connect")
    return s


def connected(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


# ---------------------------------------------------------------- normal clients

def normal(args):
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    record_from = start + args.warmup
    stop_at = start + args.warmup + args.seconds
    lat, fails = [], {"status": 0, "closed": 0, "timeout": 0, "connect": 0}
    ok = 0
    conns = [{"sock": None, "next": start + i * args.gap / max(1, args.clients), "n": i,
              "t0": None, "resp": None, "out": b""} for i in range(args.clients)]

    def finish(c, now, good, kind=None, close=False):
        nonlocal ok
        if c["t0"] >= record_from:
            if good:
                ok += 1
                lat.append((now - c["t0"]) * 1000.0)
            else:
                fails[kind] += 1
        c["t0"], c["resp"] = None, None
        if close or not good:
            drop(c)
        c["next"] = now + args.gap

    def drop(c):
        if c["sock"] is not None:
            try:
                sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass
            c["sock"].close()
            c["sock"] = None

    def begin(c, now):
        c["n"] += 1
        c["out"] = GET_SMALL if c["n"] % 2 else POST_ECHO
        c["t0"], c["resp"] = now, Response()
        if c["sock"] is None:
            try:
                c["sock"] = new_socket()
            except OSError:
                finish(c, now, False, "connect")
                return
            c["connecting"] = True
            sel.register(c["sock"], selectors.EVENT_WRITE, c)
            return
        c["connecting"] = False
        sel.register(c["sock"], selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    while True:
        now = time.monotonic()
        busy = [c for c in conns if c["t0"] is not None]
        if now >= stop_at and not busy:
            break
        if now >= stop_at + args.timeout:
            for c in busy:
                finish(c, now, False, "timeout")
            break
        for c in conns:
            if c["t0"] is None and now < stop_at and c["next"] <= now:
                begin(c, now)
            elif c["t0"] is not None and now - c["t0"] > args.timeout:
                finish(c, now, False, "timeout")
        waits = [c["next"] for c in conns if c["t0"] is None] + \
                [c["t0"] + args.timeout for c in conns if c["t0"] is not None]
        timeout = max(0.0, min(waits, default=now + 0.01) - time.monotonic())
        for key, mask in sel.select(min(timeout, 0.05)):
            c = key.data
            now = time.monotonic()
            if c["t0"] is None:
                continue
            if mask & selectors.EVENT_WRITE:
                if c.get("connecting"):
                    if not connected(c["sock"]):
                        finish(c, now, False, "connect")
                        continue
                    c["connecting"] = False
                try:
                    n = c["sock"].send(c["out"])
                    c["out"] = c["out"][n:]
                except BlockingIOError:
                    pass
                except OSError:
                    finish(c, now, False, "closed")
                    continue
                if not c["out"]:
                    sel.modify(c["sock"], selectors.EVENT_READ, c)
            if mask & selectors.EVENT_READ:
                try:
                    data = c["sock"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    finish(c, now, False, "closed")
                    continue
                if not data:
                    finish(c, now, False, "closed")
                    continue
                if c["resp"].feed(data):
                    r = c["resp"]
                    sel.unregister(c["sock"])
                    good = 200 <= r.status < 300
                    finish(c, now, good, None if good else "status", close=r.close)
    for c in conns:
        drop(c)
    return {"ok": ok, "fails": fails, "lat_ms": lat,
            "seconds": args.seconds, "clients": args.clients}


# ---------------------------------------------------------------- hostile clients

def hostile(args):
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    stop_at = start + args.seconds
    st = {"slowloris_connects": 0, "slowloris_closed_by_server": 0, "slowloris_connect_errors": 0,
          "slowloris_open_at_end": 0, "slowloris_open_max": 0,
          "reader_bytes": 0, "reader_answers": 0, "reader_errors": 0, "reader_status": {},
          "upload_ok": 0, "upload_errors": 0, "upload_status": {}, "upload_bytes_sent": 0}
    slices = max(1, int(1.0 / TICK))
    loris = [{"kind": "loris", "sock": None, "state": "down", "retry": start + TICK * (i % slices)}
             for i in range(args.slowloris)]
    readers = [{"kind": "reader", "sock": None, "state": "down", "retry": start}
               for _ in range(args.slow_readers)]
    uploads = [{"kind": "upload", "sock": None, "state": "down", "retry": start}
               for _ in range(args.uploads)]
    upload_head = (b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/octet-stream\r\n"
                   b"Content-Length: %d\r\n\r\n" % args.upload_bytes)
    payload = memoryview(b"u" * 65536)

    def close(c, retry_in):
        if c["sock"] is not None:
            try:
                sel.unregister(c["sock"])
            except (KeyError, ValueError):
                pass
            c["sock"].close()
            c["sock"] = None
        c["state"] = "down"
        c["retry"] = time.monotonic() + retry_in

    def connect(c, rcvbuf=None):
        try:
            c["sock"] = new_socket(rcvbuf)
        except OSError:
            if c["kind"] == "loris":
                st["slowloris_connect_errors"] += 1
            close(c, 0.5)
            return
        c["state"] = "connecting"
        c["since"] = time.monotonic()
        sel.register(c["sock"], selectors.EVENT_WRITE, c)

    def start_reader(c, now):
        c["resp"] = Response()
        c["tokens"], c["last"] = 0.0, now
        try:
            c["sock"].send(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        except OSError:
            st["reader_errors"] += 1
            close(c, 0.5)
            return
        c["state"] = "reading"

    def start_upload(c, now):
        c["resp"] = Response()
        c["out"], c["left"] = upload_head, args.upload_bytes
        c["tokens"], c["last"] = 0.0, now
        c["state"] = "sending"

    def on_connected(c, now):
        sel.unregister(c["sock"])
        if not connected(c["sock"]):
            if c["kind"] == "loris":
                st["slowloris_connect_errors"] += 1
            else:
                st[f"{c['kind']}_errors"] += 1
            close(c, 0.5)
            return
        if c["kind"] == "loris":
            try:
                c["sock"].send(SLOW_HEAD)
            except OSError:
                st["slowloris_connect_errors"] += 1
                close(c, 0.5)
                return
            st["slowloris_connects"] += 1
            c["state"] = "up"
            sel.register(c["sock"], selectors.EVENT_READ, c)  # the server closing it
        elif c["kind"] == "reader":
            start_reader(c, now)
        else:
            start_upload(c, now)

    def count(kind, status):
        d = st[f"{kind}_status"]
        d[str(status)] = d.get(str(status), 0) + 1

    halt = []  # SIGTERM: stop now and report (the suite sends it when the normal clients end)
    signal.signal(signal.SIGTERM, lambda signum, frame: halt.append(signum))
    tick = 0
    next_tick = start
    while True:
        now = time.monotonic()
        if now >= stop_at or halt:
            break
        # ------------------------------------------------------ tick work
        if now >= next_tick:
            tick += 1
            next_tick = now + TICK
            budget = 100  # new connections per tick at most (2,000 in 0.4 s)
            for i in range(tick % slices, len(loris), slices):
                c = loris[i]
                if c["state"] == "up":
                    try:
                        c["sock"].send(b"a")
                    except BlockingIOError:
                        pass
                    except OSError:
                        st["slowloris_closed_by_server"] += 1
                        close(c, 0.5)
            for c in loris + readers + uploads:
                if c["state"] == "down" and c["retry"] <= now and budget > 0:
                    budget -= 1
                    connect(c, 4096 if c["kind"] == "reader" else None)
                elif c["state"] == "connecting" and now - c["since"] > 10.0:
                    if c["kind"] == "loris":
                        st["slowloris_connect_errors"] += 1
                    else:
                        st[f"{c['kind']}_errors"] += 1
                    close(c, 0.5)
            for c in readers:
                if c["state"] != "reading":
                    continue
                c["tokens"] = min(c["tokens"] + args.read_rate * (now - c["last"]),
                                  args.read_rate * 0.1)
                c["last"] = now
                while c["tokens"] >= 1:
                    try:
                        data = c["sock"].recv(int(min(c["tokens"], 65536)))
                    except BlockingIOError:
                        break
                    except OSError:
                        data = b""
                    if not data:
                        st["reader_errors"] += 1
                        close(c, 0.5)
                        break
                    c["tokens"] -= len(data)
                    st["reader_bytes"] += len(data)
                    if c["resp"].feed(data, keep=False):
                        count("reader", c["resp"].status)
                        if c["resp"].status == 200:
                            st["reader_answers"] += 1
                        if c["resp"].close or c["resp"].status != 200:
                            close(c, 0.1)
                        else:
                            start_reader(c, now)
                        break
            for c in uploads:
                if c["state"] == "sending":
                    if args.upload_rate:
                        c["tokens"] = min(c["tokens"] + args.upload_rate * (now - c["last"]),
                                          args.upload_rate * 0.1)
                    else:
                        c["tokens"] = float(1 << 30)
                    c["last"] = now
                    try:
                        if c["out"]:
                            n = c["sock"].send(c["out"])
                            c["out"] = c["out"][n:]
                        while not c["out"] and c["left"] and c["tokens"] >= 1:
                            n = c["sock"].send(payload[:int(min(c["left"], c["tokens"],
                                                                65536))])
                            c["left"] -= n
                            c["tokens"] -= n
                            st["upload_bytes_sent"] += n
                    except BlockingIOError:
                        pass
                    except OSError:
                        st["upload_errors"] += 1
                        close(c, 0.5)
                        continue
                    if not c["out"] and not c["left"]:
                        c["state"] = "waiting"
                if c["state"] in ("sending", "waiting"):
                    # an early answer (413, 408...) ends the upload too
                    try:
                        data = c["sock"].recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        st["upload_errors"] += 1
                        close(c, 0.5)
                        continue
                    if c["resp"].feed(data):
                        r = c["resp"]
                        count("upload", r.status)
                        good = (r.status == 200 and c["state"] == "waiting"
                                and r.body().strip() == str(args.upload_bytes).encode())
                        st["upload_ok" if good else "upload_errors"] += 1
                        if good and not r.close:
                            start_upload(c, now)
                        else:
                            close(c, 0.5)
            up = sum(1 for c in loris if c["state"] == "up")
            st["slowloris_open_max"] = max(st["slowloris_open_max"], up)
        # ------------------------------------------------------ events
        for key, mask in sel.select(max(0.0, min(next_tick, stop_at) - time.monotonic())):
            c = key.data
            now = time.monotonic()
            if c["state"] == "connecting":
                on_connected(c, now)
            elif c["kind"] == "loris" and c["state"] == "up":
                try:
                    c["sock"].recv(4096)  # the server answered (408, 400...) or closed
                except OSError:
                    pass
                st["slowloris_closed_by_server"] += 1
                close(c, 0.5)
    st["slowloris_open_at_end"] = sum(1 for c in loris if c["state"] == "up")
    st["readers_reading_at_end"] = sum(1 for c in readers if c["state"] == "reading")
    for c in loris + readers + uploads:
        if c["sock"] is not None:
            c["sock"].close()
    return st


def main():
    global PORT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role", choices=["normal", "hostile"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--warmup", type=float, default=0.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--slowloris", type=int, default=2000)
    ap.add_argument("--slow-readers", type=int, default=150)
    ap.add_argument("--big-bytes", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--read-rate", type=float, default=100_000)
    ap.add_argument("--uploads", type=int, default=32)
    ap.add_argument("--upload-bytes", type=int, default=1024 * 1024)
    ap.add_argument("--upload-rate", type=float, default=1024 * 1024)
    args = ap.parse_args()
    PORT = args.port
    out = normal(args) if args.role == "normal" else hostile(args)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
