"""Plots the validator's scaling curves from the CSV files `cargo bench --bench scaling` writes.

Usage: python3 benchmarks/plot.py [results-dir] [plots-dir]
(defaults: target/bench-results and benchmarks/plots). Needs matplotlib.
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-results"
# Figures kept for comparison: the same bench on the code before issue 22's changes.
REFERENCE = ROOT / "benchmarks" / "reference"
PLOTS = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "benchmarks" / "plots"


def rows(name, directory=None):
    with open((directory or RESULTS) / name, newline="") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def column(data, key):
    return [row[key] for row in data]


def save(figure, name):
    PLOTS.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(PLOTS / name, dpi=110)
    plt.close(figure)
    print(f"→ {PLOTS / name}")


def cold_and_warm(data, x_key, x_label, title, name, log_x=False):
    figure, (cold, warm) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = column(data, x_key)
    cold.plot(x, [ns / 1000 for ns in column(data, "cold_ns")], "o-", color="tab:red")
    cold.set_title("cold (verified-token cache off)")
    cold.set_ylabel("µs per validation")
    warm.plot(x, column(data, "warm_ns"), "o-", color="tab:blue")
    warm.set_title("warm (verified before)")
    warm.set_ylabel("ns per validation")
    for axis in (cold, warm):
        axis.set_xlabel(x_label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        if log_x:
            axis.set_xscale("log")
    figure.suptitle(title)
    save(figure, name)


def issuers(data):
    """The set's rows (1 → 50 issuers) with the plain single-issuer validator as a dashed line."""
    plain = next(row for row in data if row["issuers"] == 0)
    sets = [row for row in data if row["issuers"] > 0]
    figure, (cold, warm) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = column(sets, "issuers")
    cold.plot(x, [ns / 1000 for ns in column(sets, "cold_ns")], "o-", color="tab:red")
    cold.axhline(plain["cold_ns"] / 1000, linestyle="--", color="grey", label="one issuer, no set")
    cold.set_title("cold (verified-token cache off)")
    cold.set_ylabel("µs per validation")
    warm.plot(x, column(sets, "warm_ns"), "o-", color="tab:blue")
    warm.axhline(plain["warm_ns"], linestyle="--", color="grey", label="one issuer, no set")
    warm.set_title("warm (verified before)")
    warm.set_ylabel("ns per validation")
    for axis in (cold, warm):
        axis.set_xlabel("issuers behind one validator")
        axis.set_xscale("log")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    figure.suptitle("Validation cost vs number of trusted issuers (ES256)")
    save(figure, "issuers.png")


def main():
    if not (RESULTS / "jwks_size.csv").exists():
        # A partial run (ONLY=issuers): plot what there is.
        if (RESULTS / "issuers.csv").exists():
            issuers(rows("issuers.csv"))
        return
    cold_and_warm(
        rows("jwks_size.csv"), "keys", "keys in the JWKS",
        "Validation cost vs JWKS size (ES256)", "jwks_size.png", log_x=True,
    )
    if (RESULTS / "issuers.csv").exists():
        issuers(rows("issuers.csv"))
    cold_and_warm(
        rows("token_size.csv"), "token_bytes", "token size (bytes)",
        "Validation cost vs token size (ES256)", "token_size.png",
    )

    cache = rows("cache_size.csv")
    figure, (lookup, memory) = plt.subplots(1, 2, figsize=(10, 3.8))
    tokens = column(cache, "tokens")
    before = rows("cache_size_before_issue22.csv", REFERENCE)
    lookup.plot(tokens, column(cache, "warm_ns"), "o-", color="tab:blue", label="now")
    lookup.plot(column(before, "tokens"), column(before, "warm_ns"), "o--", color="tab:gray",
                label="before issue 22")
    lookup.set_ylabel("ns per warm validation")
    lookup.set_title("lookup, tokens visited in scattered order")
    memory.plot(tokens, column(cache, "bytes_per_token"), "o-", color="tab:green", label="now")
    memory.plot(column(before, "tokens"), column(before, "bytes_per_token"), "o--",
                color="tab:gray", label="before issue 22")
    memory.axhline(500, color="tab:red", linestyle=":", label="issue 22's goal (500 B)")
    lookup.legend()
    memory.legend()
    memory.set_ylabel("heap bytes per cached token")
    memory.set_title(f"memory (tokens of ~{int(cache[0]['token_bytes'])} bytes)")
    for axis in (lookup, memory):
        axis.set_xscale("log")
        axis.set_xlabel("tokens in the verified-token cache")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    figure.suptitle("Verified-token cache size (EdDSA tokens)")
    save(figure, "cache_size.png")

    threads = rows("concurrency.csv")
    figure, axis = plt.subplots(figsize=(6, 3.8))
    counts = column(threads, "threads")
    axis.plot(counts, [rate / 1e6 for rate in column(threads, "validations_per_s")], "o-",
              label="now")
    before = rows("concurrency_before_issue22.csv", REFERENCE)
    axis.plot(column(before, "threads"),
              [rate / 1e6 for rate in column(before, "validations_per_s")], "o--",
              color="tab:gray", label="before issue 22")
    axis.legend()
    axis.set_xscale("log", base=2)
    axis.set_xticks(counts, [str(int(count)) for count in counts])
    axis.set_xlabel("threads validating at once (2 cores)")
    axis.set_ylabel("million warm validations / s")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.set_title("Concurrency (warm ES256, shared validator)")
    save(figure, "concurrency.png")


if __name__ == "__main__":
    main()
