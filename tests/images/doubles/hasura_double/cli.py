"""A stand-in for `hasura-cli console` (only its migrate settings API).

[C: "Migration mode" lives in the CLI console server] in ../shared/contracts.md:
console on 9695, API on 9693; GET /apis/migrate/settings -> {"migration_mode":
"true"} by default; PUT {"name":"migration_mode","value":"false"} -> 200
{"message":"Successfuly set"} (sic); other methods 405; while off,
POST /apis/migrate -> 400 {"code":"migration_mode_disabled"}.
"""

import argparse
import json
import signal
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"migration_mode": "true"}


def api_handler():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            print("console-api:", fmt % args, flush=True)

        def reply(self, status, body):
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/apis/migrate/settings":
                return self.reply(200, {"migration_mode": STATE["migration_mode"]})
            return self.reply(404, {"code": "not-found"})

        def do_PUT(self):
            if self.path != "/apis/migrate/settings":
                return self.reply(404, {"code": "not-found"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                assert body["name"] == "migration_mode" and body["value"] in ("true", "false")
            except (ValueError, KeyError, AssertionError):
                return self.reply(400, {"code": "request_parameter_invalid", "message": "invalid setting"})
            STATE["migration_mode"] = body["value"]
            return self.reply(200, {"message": "Successfuly set"})

        def do_POST(self):
            if self.path == "/apis/migrate":
                if STATE["migration_mode"] == "false":
                    return self.reply(400, {"code": "migration_mode_disabled", "message": "migration mode is disabled"})
                return self.reply(200, {"name": "migration recorded by the double (nothing written)"})
            if self.path == "/apis/migrate/settings":
                return self.reply(405, {"code": "method_not_allowed"})
            return self.reply(404, {"code": "not-found"})

        def do_DELETE(self):
            return self.reply(405, {"code": "method_not_allowed"})

    return Handler


def console_handler():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            page = b"<!doctype html><title>Hasura console (LHD double)</title><p>Console double: no UI here.</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    return Handler


def console(argv):
    parser = argparse.ArgumentParser(prog="hasura-cli console")
    parser.add_argument("--address", default="localhost")
    parser.add_argument("--console-port", type=int, default=9695)
    parser.add_argument("--api-port", type=int, default=9693)
    parser.add_argument("--endpoint", default="http://localhost:8080")
    parser.add_argument("--admin-secret")
    parser.add_argument("--project")
    parser.add_argument("--console-hge-endpoint")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--skip-update-check", action="store_true")
    args = parser.parse_args(argv)
    try:  # the real CLI refuses to start without a reachable server
        urllib.request.urlopen(f"{args.endpoint.rstrip('/')}/healthz", timeout=5).read()
    except OSError as exc:
        print(f"FATA[0000] cannot reach the graphql-engine server at {args.endpoint}: {exc}", file=sys.stderr)
        sys.exit(1)
    host = "0.0.0.0" if args.address in ("0.0.0.0", "") else args.address
    api = ThreadingHTTPServer((host, args.api_port), api_handler())
    ui = ThreadingHTTPServer((host, args.console_port), console_handler())
    threading.Thread(target=ui.serve_forever, daemon=True).start()
    print(f"INFO console running at: http://{args.address}:{args.console_port}/", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api.serve_forever()


def main():
    args = sys.argv[1:]
    if args[:1] == ["version"]:
        print("hasura-cli double (LHD)")
        return
    if args[:1] != ["console"]:
        print(f"hasura-cli double: only `console` is implemented, not {args[:1]}", file=sys.stderr)
        sys.exit(1)
    console(args[1:])
