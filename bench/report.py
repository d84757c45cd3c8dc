"""Turns make bench's raw samples into the table and plot of docs/benchmarks.md."""

from __future__ import annotations

import statistics
from pathlib import Path

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
README_BEGIN, README_END = "<!-- bench:summary:begin -->", "<!-- bench:summary:end -->"
LABELS = {
    "jwt": "crossbar-jwt (shipped config, JWT ticket)",
    "ceiling": "same router, static ticket + static permissions (ceiling)",
    "minimal": "same router, static permissions + a minimal PyJWT dynamic authenticator (floor for login)",
    "stock": "stock Crossbar, static ticket (default options, `--loglevel info`)",
    "socketio": "socket.io 4 + jsonwebtoken",
    "jwt-1proxy": "crossbar-jwt scale-out config, 1 proxy worker (both cores)",
    "jwt-2proxy": "crossbar-jwt scale-out config, 2 proxy workers (both cores)",
}

HTTP_LABELS = {
    "publish": "crossbar-jwt `POST /publish` (Bearer JWT, verified and decided by the policy)",
    "bridge": "Crossbar's HTTP bridge `publisher` (static role, no signature)",
}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _ratios(samples: dict, name: str, base: str, key: str = "rate") -> dict | None:
    """Per-round ratios (alternated rounds share the machine's mood), then their spread."""
    if base not in samples:
        return None
    return _spread([a[key] / b[key] for a, b in zip(samples[name], samples[base], strict=True)])


def summarize(results: dict) -> dict:
    sessions = results["sessions"]
    summary = {"verify": {alg: _spread(v) for alg, v in results["verify"].items()}, "sessions": {}, "fanout": {}}
    for name, rounds in sessions.items():
        summary["sessions"][name] = {
            "rate": _spread([r["rate"] for r in rounds]),
            "p50_ms": _spread([r["p50_ms"] for r in rounds]),
            "p99_ms": _spread([r["p99_ms"] for r in rounds]),
            "errors": sum(r["errors"] for r in rounds),
            "vs_ceiling": _ratios(sessions, name, "ceiling"),
            "p99_vs_ceiling": _ratios(sessions, name, "ceiling", "p99_ms"),
            "vs_stock": _ratios(sessions, name, "stock"),
            "vs_minimal": _ratios(sessions, name, "minimal"),
            "p99_vs_minimal": _ratios(sessions, name, "minimal", "p99_ms"),
            # What a server core buys: sessions per CPU-second of every server process.
            "per_cpu_second": _spread([r["rate"] * 100 / max(1e-9, r["server_cpu_percent"]) for r in rounds]),
            "generator_cpu_percent": statistics.median(r["generator_cpu_percent"] for r in rounds),
            "server_cpu_percent": statistics.median(r["server_cpu_percent"] for r in rounds),
        }
    for name, kinds in results["fanout"].items():
        summary["fanout"][name] = {}
        for kind, rounds in kinds.items():
            base = results["fanout"].get("ceiling", {}).get(kind)
            ratio = _spread([a["rate"] / b["rate"] for a, b in zip(rounds, base, strict=True)]) if base else None
            summary["fanout"][name][kind] = {
                "rate": _spread([r["rate"] for r in rounds]), "vs_static": ratio,
                "generator_cpu_percent": statistics.median(r["generator_cpu_percent"] for r in rounds),
            }  # fmt: skip
    http = results.get("http")
    if http:
        summary["http"] = {
            name: {
                "rate": _spread([r["rate"] for r in rounds]),
                "p50_ms": _spread([r["p50_ms"] for r in rounds]),
                "p99_ms": _spread([r["p99_ms"] for r in rounds]),
                "vs_bridge": _ratios(http, name, "bridge"),
                "errors": sum(r["errors"] for r in rounds),
                "delivered": sum(r["events"] for r in rounds) / max(1, sum(r["requests"] for r in rounds)),
                "server_cpu_percent": statistics.median(r["server_cpu_percent"] for r in rounds),
                "generator_cpu_percent": statistics.median(r["generator_cpu_percent"] for r in rounds),
            }
            for name, rounds in http.items()
        }
    summary["memory"] = results["memory"]
    return summary


def _range(s: dict, fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _ratio(s: dict | None) -> str:
    return "—" if s is None else _range(s, "{:.2f}")


def markdown(summary: dict, results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, Python {m['python']}, node {m['node']}, "
        f"{results['rounds']} alternated rounds, `{results['command']}` ({results['seconds'] / 60:.1f} min). "
        "Each cell: median (min–max over rounds); ratios are taken round by round, then summarized.",
        "",
        "### 1. Session establishment (fresh JWT per session, 50 in flight, connect → joined → close)",
        "",
        "| system | sessions/s | × ceiling | × minimal | × stock | p50 ms | p99 ms | p99 × ceiling | p99 × minimal "
        "| server CPU | sessions per server CPU-second | generator CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary["sessions"].items():
        lines.append(
            f"| {LABELS.get(name, name)} | {_range(s['rate'])} | {_ratio(s['vs_ceiling'])} "
            f"| {_ratio(s.get('vs_minimal'))} | {_ratio(s['vs_stock'])} "
            f"| {_range(s['p50_ms'], '{:.1f}')} | {_range(s['p99_ms'], '{:.1f}')} | {_ratio(s['p99_vs_ceiling'])} "
            f"| {_ratio(s.get('p99_vs_minimal'))} | {s['server_cpu_percent']:.0f} % "
            f"| {_range(s['per_cpu_second']) if 'per_cpu_second' in s else '-'} | {s['generator_cpu_percent']:.0f} % |"
        )
    lines += [
        "",
        "### 2. Fan-out: 1 publisher, 100 subscribers (delivered events/s)",
        "",
        "| system | topic | events/s | × static permissions | generator CPU |",
        "|---|---|---|---|---|",
    ]
    for name, kinds in summary["fanout"].items():
        for kind, s in kinds.items():
            lines.append(f"| {LABELS.get(name, name)} | {kind} | {_range(s['rate'])} | {_ratio(s['vs_static'])} "
                         f"| {s['generator_cpu_percent']:.0f} % |")  # fmt: skip
    lines += ["", "### 3. Verification cost per token (pure core, µs)", "", "| algorithm | µs/token |", "|---|---|"]
    for alg, s in summary["verify"].items():
        lines.append(f"| {alg} | {_range(s, '{:.1f}')} |")
    if "http" in summary:
        lines += [
            "",
            "### 4. HTTP publish (keep-alive, 20 in flight, 1 subscriber; publishes/s)",
            "",
            "| endpoint | publishes/s | × Crossbar bridge | p50 ms | p99 ms | delivered | errors | server CPU "
            "| generator CPU |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, h in summary["http"].items():
            lines.append(
                f"| {HTTP_LABELS.get(name, name)} | {_range(h['rate'])} | {_ratio(h['vs_bridge'])} "
                f"| {_range(h['p50_ms'], '{:.1f}')} | {_range(h['p99_ms'], '{:.1f}')} | {100 * h['delivered']:.0f} % "
                f"| {h['errors']} | {h['server_cpu_percent']:.0f} % | {h['generator_cpu_percent']:.0f} % |"
            )
    lines += ["", "### 5. Memory per idle authenticated session (RSS growth of the server's workers)", "",
              "| system | sessions held | KiB/session (second batch) | KiB/session (first batch) | RSS held |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, s in summary["memory"].items():
        first = f"{s['kib_per_session_first']:.1f}" if "kib_per_session_first" in s else "—"
        rss = f"{s['rss_mib']:.0f} MiB" if "rss_mib" in s else "—"
        lines.append(f"| {LABELS.get(name, name)} | {s['sessions']} | {s['kib_per_session']:.1f} | {first} | {rss} |")
    lines += ["", "![session rate, latency and fan-out](benchmarks.png)"]
    return "\n".join(lines)


def text_table(summary: dict) -> str:
    rows = ["", f"{'system':10s} {'sessions/s':>11s} {'x ceiling':>9s} {'x minimal':>9s} {'x stock':>8s} "
            f"{'p50 ms':>7s} {'p99 ms':>7s} {'p99 x min':>9s} {'per CPU-s':>9s}"]  # fmt: skip
    for name, s in summary["sessions"].items():
        rows.append(
            f"{name:10s} {s['rate']['median']:11.0f} {_x(s['vs_ceiling']):>9s} {_x(s.get('vs_minimal')):>9s} "
            f"{_x(s['vs_stock']):>8s} {s['p50_ms']['median']:7.1f} {s['p99_ms']['median']:7.1f} "
            f"{_x(s.get('p99_vs_minimal')):>9s} {s.get('per_cpu_second', {}).get('median', 0):9.0f}"
        )
    for name, kinds in summary["fanout"].items():
        for kind, s in kinds.items():
            rows.append(f"fan-out {name:9s} {kind:20s} {s['rate']['median']:8.0f}/s x static {_x(s['vs_static'])}")
    for name, h in summary.get("http", {}).items():
        rows.append(f"http {name:8s} {h['rate']['median']:8.0f}/s x bridge {_x(h['vs_bridge'])} "
                    f"p50 {h['p50_ms']['median']:.1f} ms p99 {h['p99_ms']['median']:.1f} ms")  # fmt: skip
    return "\n".join(rows)


def _at_least(cell: dict) -> str:
    return "≥ " if cell["generator_cpu_percent"] >= 90 else ""


def _x(s: dict | None) -> str:
    return "-" if s is None else f"{s['median']:.2f}"


def readme_summary(summary: dict, results: dict) -> str:
    s = summary["sessions"]
    f = summary["fanout"]
    rows = [
        f"`make bench`, {results['machine']['date']}, {results['machine']['cores']} cores; median of "
        f"{results['rounds']} alternated rounds. Details, method and what limits each figure: "
        "[docs/benchmarks.md](docs/benchmarks.md).",
        "",
        "| | sessions/s | × static-ticket ceiling | × minimal PyJWT authenticator | × stock Crossbar "
        "| p99 connect→joined | KiB per idle session |",
        "|---|---|---|---|---|---|---|",
    ]
    memory = summary.get("memory") or {}
    for name in s:
        rate = f"{_at_least(s[name])}{s[name]['rate']['median']:.0f}"
        kib = f"{memory[name]['kib_per_session']:.1f}" if name in memory else "-"
        rows.append(f"| {LABELS.get(name, name)} | {rate} | {_x(s[name]['vs_ceiling'])} "
                    f"| {_x(s[name].get('vs_minimal'))} | {_x(s[name]['vs_stock'])} "
                    f"| {s[name]['p99_ms']['median']:.0f} ms | {kib} |")  # fmt: skip
    if "jwt" in f:
        kinds = list(f["jwt"])
        rows += ["", "| fan-out, 100 subscribers | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
        for name in f:
            cells = " | ".join(f"{_at_least(f[name][k])}{f[name][k]['rate']['median'] / 1000:.0f}k events/s "
                               f"(× {_x(f[name][k]['vs_static'])})" for k in kinds)  # fmt: skip
            rows.append(f"| {LABELS.get(name, name)} | {cells} |")
    if "http" in summary:
        rows += ["", "| HTTP publish, keep-alive, 20 in flight | publishes/s | × Crossbar bridge | p50 | p99 |",
                 "|---|---|---|---|---|"]  # fmt: skip
        for name, h in summary["http"].items():
            rows.append(f"| {HTTP_LABELS.get(name, name)} | {h['rate']['median']:.0f} | {_x(h['vs_bridge'])} "
                        f"| {h['p50_ms']['median']:.1f} ms | {h['p99_ms']['median']:.1f} ms |")  # fmt: skip
    rows += ["", "≥: the load generator's core was saturated (≥ 90 % CPU), so the server could do more.",
             "", "![session rate, latency and fan-out](docs/benchmarks.png)"]  # fmt: skip
    return "\n".join(rows)


def _replace_between(path: Path, begin: str, end: str, body: str) -> None:
    text = path.read_text()
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{body}\n{end}{tail}")


def write_docs(summary: dict, results: dict, doc: Path, png: Path, readme: Path) -> None:
    _replace_between(doc, BEGIN, END, markdown(summary, results))
    _replace_between(readme, README_BEGIN, README_END, readme_summary(summary, results))
    plot(summary, png)


def plot(summary: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, latency_ax, fanout_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    names = list(summary["sessions"])
    s = summary["sessions"]
    medians = [s[n]["rate"]["median"] for n in names]
    errors = [[m - s[n]["rate"]["min"] for n, m in zip(names, medians, strict=True)],
              [s[n]["rate"]["max"] - m for n, m in zip(names, medians, strict=True)]]  # fmt: skip
    rate_ax.bar(names, medians, yerr=errors, capsize=4, color="#4c78a8")
    rate_ax.set_title("session establishment (sessions/s)")
    width = 0.38
    xs = range(len(names))
    latency_ax.bar([x - width / 2 for x in xs], [s[n]["p50_ms"]["median"] for n in names], width, label="p50")
    latency_ax.bar([x + width / 2 for x in xs], [s[n]["p99_ms"]["median"] for n in names], width, label="p99")
    latency_ax.set_xticks(list(xs), names)
    latency_ax.set_title("connect → joined latency (ms)")
    latency_ax.legend()
    f = summary["fanout"]
    systems = list(f)
    kinds = list(next(iter(f.values())))
    for i, kind in enumerate(kinds):
        offset = (i - (len(kinds) - 1) / 2) * width
        fanout_ax.bar([x + offset for x in range(len(systems))], [f[n][kind]["rate"]["median"] for n in systems],
                      width, label=kind)  # fmt: skip
    fanout_ax.set_xticks(list(range(len(systems))), systems)
    fanout_ax.set_title("fan-out, 100 subscribers (events/s)")
    fanout_ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
