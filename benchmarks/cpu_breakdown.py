#!/usr/bin/env python3
"""The token service's CPU per request, split by what it was spent on.

Reads `perf script -F tid,ip,sym,dso` output (from `perf record -e cpu-clock --call-graph
dwarf` of the issuance bench's process, see BENCHMARKS.md) on stdin and prints each part's
share of the samples; with `--per-request US`, also the microseconds of the service's CPU per
request (the bench's "service µs/req") that each part takes.

A sample belongs to the part of the frame nearest its leaf that names one of the specific
parts (random, digest, store, client check, parsing, JSON, token logic, metrics and tracing):
SHA-256 inside the client secret's HMAC counts as the client check, a kernel call made by
sqlx's SQLite worker as the store. Samples no specific part claims go to the generic ones
(HTTP and the kernel's socket work, the tokio runtime) by the same rule, and the rest to
"other". Wrappers around every request (the trace and metrics layers) are never matched by
name, so they do not claim the work done inside them.
"""

import re
import sys
from collections import Counter

# (part, pattern over one frame's symbol), leaf-nearest frame wins within a tier.
SPECIFIC = [
    ("random", r"secret::random_token|secret::random_bytes|aws_lc_rs::rand|getrandom|RAND_bytes"),
    ("digest (SHA-256 of the token)", r"secret::token_digest"),
    ("store", r"sqlx|sqlite3|libsqlite|group_commit|scopegate_token_service::store::"),
    ("client check", r"credentials::|secret::Verifier|throttle::|rate_limits::|governor::|RateLimits|http::token::within_rate|introspect::authenticate_api"),
    ("parsing (form, headers)", r"http::form::|form_urlencoded|client_auth::|percent_encoding|http::token::dpop_proof|http::peer::"),
    ("JSON", r"serde_json|introspection_answer|axum::json"),
    ("token logic (grant, scopes, lookup)", r"scopegate_token_service::(grant|tokens|clients|scope_catalogue|dpop)|scopegate_validator::scope"),
    ("metrics, tracing", r"telemetry::metrics|metrics::|metrics_exporter|tracing_core|tracing::span|opentelemetry"),
]
GENERIC = [
    ("HTTP, kernel (sockets, wake-ups)", r"hyper|axum|tower|tokio::net|tokio::io|mio::|\[kernel|kallsyms|tcp_|sock_|__x64_sys|entry_SYSCALL|do_syscall|epoll"),
    ("tokio runtime", r"tokio::"),
]
OTHER = "other (allocator, unresolved)"
TIERS = [[(name, re.compile(pattern)) for name, pattern in tier] for tier in (SPECIFIC, GENERIC)]


def samples(lines):
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
        elif line.startswith("\t"):
            stack.append(line.strip())
        else:
            stack = []  # a sample's header line
    if stack:
        yield stack


def part_of(stack):
    """`stack` as perf prints it: leaf first."""
    for tier in TIERS:
        for frame in stack:
            for name, pattern in tier:
                if pattern.search(frame):
                    return name
    return OTHER


def main():
    per_request = None
    if len(sys.argv) == 3 and sys.argv[1] == "--per-request":
        per_request = float(sys.argv[2])
    counts = Counter(part_of(stack) for stack in samples(sys.stdin))
    total = sum(counts.values())
    order = [name for name, _ in SPECIFIC + GENERIC] + [OTHER]
    print(f"{total} samples")
    for name in order:
        share = counts[name] / total if total else 0.0
        extra = f"  {share * per_request:6.1f} µs/req" if per_request is not None else ""
        print(f"{name:40} {share * 100:5.1f} %{extra}")


if __name__ == "__main__":
    main()
