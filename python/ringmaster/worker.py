"""python -m ringmaster.worker --attach CONTROL_PATH [options] module:app

Attach this process to a running ringmaster supervisor as a worker: it asks
the supervisor's control socket for a lane, receives the shared region's
descriptors, and serves requests through the same C core as the embedded
workers (the _ringmaster extension built by `pip install ./python`), until
the supervisor says stop, SIGTERM or Ctrl-C. See docs/attach.md.
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ringmaster.worker",
        description="Serve APP as a worker attached to a running ringmaster supervisor.")
    parser.add_argument("--attach", metavar="CONTROL_PATH", required=True,
                        help="the supervisor's control socket (its --control)")
    parser.add_argument("--threads", type=int, default=1, metavar="T",
                        help="serving threads (default 1)")
    parser.add_argument("--log-level", default="info",
                        choices=["error", "warn", "info", "debug"])
    parser.add_argument("--interface", choices=["auto", "native", "wsgi"])
    parser.add_argument("--root-path", metavar="PATH")
    parser.add_argument("--forwarded-allow-ips", metavar="LIST")
    parser.add_argument("app", metavar="APP", help="module:attr or path/to/file.py[:attr]")
    args = parser.parse_args(argv)
    if not 1 <= args.threads <= 256:
        parser.error("--threads: expected 1..256")
    try:
        import _ringmaster
    except ImportError as exc:
        print(f"ringmaster.worker: error: the _ringmaster extension is missing ({exc}); "
              f"install the package with its extension for this interpreter: "
              f"{sys.executable} -m pip install ./python", file=sys.stderr)
        return 2
    try:
        _ringmaster._serve_attached(args.attach, args.app, threads=args.threads,
                                    log_level=args.log_level, interface=args.interface,
                                    root_path=args.root_path,
                                    forwarded_allow_ips=args.forwarded_allow_ips)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"ringmaster.worker: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
