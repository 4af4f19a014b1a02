#!/usr/bin/env python3
"""Reads the last `cargo bench -p scopegate-validator --bench verify` run and prints ratios."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def estimate(group, name):
    path = root / group / name.replace(" ", "_").replace("(", "_").replace(")", "_") / "new" / "estimates.json"
    if not path.exists():
        # criterion sanitises names; fall back to a fuzzy match
        matches = [p for p in (root / group).glob("*/new/estimates.json") if name.split()[0] in p.parts[-3]]
        path = matches[0]
    data = json.loads(path.read_text())
    return data["median"]["point_estimate"], data["median"]["confidence_interval"]


print(f"{'alg':6} {'bare':>10} {'cold':>10} {'warm':>10} {'cold/bare':>10}")
for group in ("RS256", "ES256", "EdDSA"):
    bare, _ = estimate(group, "bare signature check")
    cold, _ = estimate(group, "cold (cache off)")
    warm, _ = estimate(group, "warm (cache hit)")
    print(f"{group:6} {bare/1000:>8.2f}µs {cold/1000:>8.2f}µs {warm:>8.0f}ns {cold/bare:>10.3f}")

opaque, _ = estimate("cached", "opaque (introspection cache hit)")
jwt, _ = estimate("cached", "jwt (verified-token cache hit)")
print(f"\ncached opaque {opaque:.0f}ns, warm JWT {jwt:.0f}ns, opaque/jwt {opaque/jwt:.2f}")
