"""Checks that `palette simulate` writes OTLP/JSON an OpenTelemetry collector accepts.

Decodes every line with the official protobuf definitions
(`opentelemetry-proto`): OTLP/JSON writes trace and span ids as hex, where
protobuf's generic JSON mapping expects base64, so ids are converted first,
as the OTLP specification describes; then `json_format.Parse` must accept the
document with no unknown field, every id must have its exact length, kinds
must be SERVER/CLIENT/INTERNAL, and times must be ordered. Finally
`palette inspect` must read the file back with the span count decoded here.

Usage: python3 otlp_valid.py PALETTE_BINARY WORKDIR
Prints `N passed, M failed` and exits non-zero on any failure.
"""

import base64
import json
import subprocess
import sys
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def hex_ids_to_base64(doc):
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return doc


def check_file(path):
    spans = 0
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        request = ExportTraceServiceRequest()
        json_format.Parse(json.dumps(hex_ids_to_base64(json.loads(line))), request, ignore_unknown_fields=False)
        for rs in request.resource_spans:
            names = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            assert names.get("service.name"), f"line {number}: resource without service.name"
            for ss in rs.scope_spans:
                for span in ss.spans:
                    assert len(span.trace_id) == 16, f"line {number}: trace id of {len(span.trace_id)} bytes"
                    assert len(span.span_id) == 8, f"line {number}: span id of {len(span.span_id)} bytes"
                    assert len(span.parent_span_id) in (0, 8), f"line {number}: bad parent id"
                    assert span.kind in (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL)
                    assert 0 < span.start_time_unix_nano <= span.end_time_unix_nano, f"line {number}: times"
                    spans += 1
    return spans


def main():
    palette, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    run = lambda *args: subprocess.run([palette, *args], check=True, capture_output=True, text=True)
    run("example", "-o", str(work), "--force", "--traces", "300")
    passed = failed = 0
    for system in ("webshop", "figure1"):
        for kind in ("palette", "naive"):
            model = work / f"{system}-{kind}.json"
            out = work / f"{system}-{kind}.jsonl"
            try:
                run("fit", str(work / f"{system}.otlp.jsonl"), "--kind", kind, "-o", str(model))
                run("simulate", str(model), "-n", "200", "--seed", "3", "-o", str(out))
                decoded = check_file(out)
                report = json.loads(run("inspect", "--json", str(out)).stdout)
                assert report["spans"] == decoded, f"inspect read {report['spans']} spans, protobuf decoded {decoded}"
                assert report["traces"] == 200, f"inspect read {report['traces']} traces"
                print(f"ok   {system} {kind}: {decoded} spans decoded by opentelemetry-proto and read back by palette")
                passed += 1
            except Exception as e:  # report every case, then fail
                print(f"FAIL {system} {kind}: {e}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
