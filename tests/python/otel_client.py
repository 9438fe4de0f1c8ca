#!/usr/bin/env python3
"""A real OpenTelemetry client calling a Palette root API.

Usage: otel_client.py URL

Starts a CLIENT span with the OpenTelemetry SDK, injects it into the
request with the W3C Trace Context propagator (`traceparent`), POSTs to URL
and prints one JSON line: {"trace_id", "span_id", "status"}. The runtime's
integration test checks that every span the system emits joins this trace
and that the root SERVER span's parent is this span.
"""

import json
import sys
import urllib.error
import urllib.request

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1]
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("palette-otel-client")
    with tracer.start_as_current_span("call root API", kind=trace.SpanKind.CLIENT) as span:
        headers: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(headers)
        request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as e:
            status = e.code
        ctx = span.get_span_context()
    print(json.dumps({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
