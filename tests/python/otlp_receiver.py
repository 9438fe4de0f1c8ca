"""A test OTLP/HTTP receiver: decodes trace exports with the official definitions.

Listens on 127.0.0.1 (a free port), prints the port on the first line of
stdout, and for every `POST` decodes the body with opentelemetry-proto's
`ExportTraceServiceRequest.FromString`, then appends one JSON line to
OUT_FILE describing what it decoded: span count, services, error spans,
roots, kinds, and whether every id had its exact length. A body that does
not decode is answered 400 and recorded as `{"error": ...}`.

Usage: python3 otlp_receiver.py OUT_FILE [--status CODE]
(`--status` answers every request with CODE instead of decoding, to test
retries.) Exits by itself after 120 s, so a test that dies cannot leave
it running.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]
STATUS = int(sys.argv[sys.argv.index("--status") + 1]) if "--status" in sys.argv else None
LOCK = threading.Lock()


def record(entry):
    with LOCK, open(OUT, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as collectors do

    def reply(self, code, body, content_type="application/x-protobuf"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if STATUS is not None:
            record({"status": STATUS, "bytes": len(body)})
            self.reply(STATUS, b"unavailable\n", "text/plain")
            return
        try:
            request = ExportTraceServiceRequest.FromString(body)
        except Exception as e:  # report it to the test, answer as a collector would
            record({"error": str(e)})
            self.reply(400, b"bad protobuf\n", "text/plain")
            return
        spans = errors = roots = 0
        ids_ok = True
        services, kinds, names, messages = set(), {}, set(), set()
        for rs in request.resource_spans:
            service = {kv.key: kv.value.string_value for kv in rs.resource.attributes}.get("service.name", "")
            services.add(service)
            for ss in rs.scope_spans:
                ids_ok &= ss.scope.name == "palette"
                for span in ss.spans:
                    spans += 1
                    ids_ok &= len(span.trace_id) == 16 and len(span.span_id) == 8
                    ids_ok &= len(span.parent_span_id) in (0, 8)
                    ids_ok &= 0 < span.start_time_unix_nano <= span.end_time_unix_nano
                    roots += len(span.parent_span_id) == 0
                    kinds[str(span.kind)] = kinds.get(str(span.kind), 0) + 1
                    names.add(span.name)
                    if span.status.code == 2:
                        errors += 1
                        messages.add(span.status.message)
                    for kv in span.attributes:
                        which = kv.value.WhichOneof("value")
                        names.add(f"{kv.key}={getattr(kv.value, which)}")
        record(
            {
                "spans": spans,
                "services": sorted(services),
                "errors": errors,
                "messages": sorted(messages),
                "roots": roots,
                "kinds": kinds,
                "names": sorted(names),
                "ids_ok": bool(ids_ok),
                "content_type": self.headers.get("Content-Type", ""),
            }
        )
        self.reply(200, ExportTraceServiceResponse().SerializeToString())

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Timer(120, server.shutdown).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
