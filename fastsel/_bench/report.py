"""Output of ``python -m fastsel bench``: the tables, the JSON, the plot."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Collection, Dict, List, Optional, Sequence, TextIO


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "0"
    for unit, scale in (("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3)):
        if seconds / scale < 999.5:         # 3 significant digits, no "1e+03"
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO,
          right: Collection[int] = ()) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print(line(header), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print(line(r), file=out)


def print_micro(results: List[Dict[str, Any]], impls: List[str], out: TextIO) -> None:
    if not results:
        return
    header = ["operation", "size"]
    header += [f"{i}/call" for i in impls]
    header += ["stdlib/fastsel"]
    header += [f"{i}/event" for i in impls]
    header += ["C floor/call"]
    rows = []
    for r in results:
        row = [r["op"], r["size"]]
        row += [fmt_time(r["median"].get(i)) for i in impls]
        row += [fmt_ratio(r.get("ratio"))]
        pe = r.get("per_event") or {}
        row += [fmt_time(pe.get(i)) if pe else "-" for i in impls]
        row += [fmt_time(r.get("floor"))]
        rows.append(row)
    n = len(impls)
    right = set(range(2, 2 + 2 * n + 2))
    print("Micro-benchmarks: median time per call (per operation), "
          "stdlib/fastsel = ratio of medians (> 1: fastsel faster)", file=out)
    table(header, rows, out, right)
    for r in results:
        if r.get("note"):
            print(f"  note: {r['op']}: {r['note']}", file=out)


def print_scaling(sc: Dict[str, Any], out: TextIO) -> None:
    series = [s for s in sc["series"] if s["points"] or s["stopped"]]
    if not series:
        return
    header = ["fds"] + [f"{s['mechanism']} {s['impl']}" for s in series]
    rows = []
    for n in sc["sizes"]:
        row = [str(n)]
        for s in series:
            p = next((p for p in s["points"] if p["nfds"] == n), None)
            if p is not None:
                row.append(fmt_time(p["median"]))
            elif s["stopped"] and n >= s["stopped"]["nfds"]:
                row.append("refused")
            else:
                row.append("-")
        rows.append(row)
    print(f"\nScaling: one zero-timeout wait with {sc['nready']} ready fds as the "
          "number of watched fds grows (median per call)", file=out)
    table(header, rows, out, right=range(0, len(header)))
    for s in series:
        if s["stopped"]:
            st = s["stopped"]
            print(f"  {s['mechanism']} {s['impl']}: stops at {st['nfds']} fds "
                  f"(highest fd {st['max_fd']} >= FD_SETSIZE {sc['fd_setsize']}): "
                  f"{st['error']}", file=out)
    growth = []
    for s in series:
        pts = s["points"]
        if len(pts) >= 2 and pts[0]["median"] > 0:
            a, b = pts[0], pts[-1]
            slope = (math.log(b["median"] / a["median"]) / math.log(b["nfds"] / a["nfds"]))
            growth.append(f"{s['mechanism']} {s['impl']}: x{b['median'] / a['median']:.1f} "
                          f"from {a['nfds']} to {b['nfds']} fds (log-log slope {slope:.2f})")
    if growth:
        print("  growth: " + "\n          ".join(growth), file=out)


def print_echo(results: List[Dict[str, Any]], impls: List[str], client: str,
               out: TextIO) -> None:
    if not results:
        return
    conns = results[0]["conns"]
    print(f"\nasyncio echo server, {conns} connections, client: {client}; "
          f"medians of {len(results[0]['runs'])} interleaved runs; CPU/req = user+sys CPU "
          "of the server process per request (user: the Python side, event loop included)",
          file=out)
    header = ["variant", "message", "event loop", "req/s", "p50", "p99", "CPU/req",
              "user CPU/req", "req/s vs stdlib", "stdlib CPU/req / this"]
    rows = []
    base = {(r["variant"], r["size"]): r for r in results if r["impl"] == "stdlib"}
    for r in results:
        m = r["median"]
        b = base.get((r["variant"], r["size"]))
        rps_ratio = m["rps"] / b["median"]["rps"] if b and b["median"]["rps"] else None
        cpu_ratio = (b["median"]["cpu_per_request_s"] / m["cpu_per_request_s"]
                     if b and m["cpu_per_request_s"] else None)
        label = {"protocol": "Protocol", "sock": "sock_recv/sock_sendall"}[r["variant"]]
        rows.append([label, size_label(r["size"]), _loop_label(r["impl"]),
                     f"{m['rps']:,.0f}", fmt_time(m["p50_s"]), fmt_time(m["p99_s"]),
                     fmt_time(m["cpu_per_request_s"]),
                     fmt_time(m.get("user_cpu_per_request_s")), fmt_ratio(rps_ratio),
                     fmt_ratio(cpu_ratio)])
    table(header, rows, out, right=range(3, 10))


def _loop_label(impl: str) -> str:
    return {"stdlib": "asyncio+stdlib selector", "fastsel": "asyncio+fastsel selector",
            "uvloop": "uvloop"}.get(impl, impl)


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def summary(data: Dict[str, Any]) -> List[str]:
    """The headline ratios (geometric means of stdlib/fastsel)."""
    lines = []

    def gmean(xs: List[float]) -> Optional[float]:
        xs = [x for x in xs if x and x > 0]
        return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None
    waits = [r["ratio"] for r in data.get("micro", []) if r["name"].startswith("wait/")
             and "ratio" in r]
    sels = [r["ratio"] for r in data.get("micro", []) if r["name"].startswith("selector/")
            and "ratio" in r]
    if waits:
        lines.append(f"waits: stdlib/fastsel geometric mean {gmean(waits):.2f}x "
                     f"(range {min(waits):.2f}x-{max(waits):.2f}x)")
    if sels:
        lines.append(f"selector operations: stdlib/fastsel geometric mean {gmean(sels):.2f}x "
                     f"(range {min(sels):.2f}x-{max(sels):.2f}x)")
    echo = data.get("echo", [])
    base = {(r["variant"], r["size"]): r for r in echo if r["impl"] == "stdlib"}

    def ratios(impl: str, key: str, inverse: bool) -> List[float]:
        out = []
        for r in echo:
            b = base.get((r["variant"], r["size"]))
            if r["impl"] != impl or b is None:
                continue
            x, y = b["median"].get(key), r["median"].get(key)
            if x and y:
                out.append(x / y if inverse else y / x)
        return out
    for impl in ("fastsel", "uvloop"):
        cpu = gmean(ratios(impl, "cpu_per_request_s", True))
        user = gmean(ratios(impl, "user_cpu_per_request_s", True))
        rps = gmean(ratios(impl, "rps", False))
        if cpu and user and rps:
            lines.append(f"echo, {impl} against asyncio on the stdlib selector (geometric "
                         f"means): server CPU per request stdlib/{impl} {cpu:.2f}x (user-space "
                         f"CPU {user:.2f}x), requests/s {impl}/stdlib {rps:.2f}x")
    return lines


def write_json(data: Dict[str, Any], path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


COLORS = {"select": "tab:red", "poll": "tab:blue", "epoll": "tab:green",
          "kqueue": "tab:purple"}
STYLES: Dict[str, Dict[str, Any]] = {"stdlib": dict(linestyle="--", marker="o", markerfacecolor="white"),
          "fastsel": dict(linestyle="-", marker="s"),
          "C floor": dict(linestyle=":", marker=None, linewidth=1.2, alpha=0.8)}


def plot(data: Dict[str, Any], path: str) -> Optional[str]:
    """Write the scaling figure; returns None, or why there is no plot."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not importable: no plot (pip install 'fastsel[bench]')"
    sc = data.get("scaling")
    if not sc or not any(s["points"] for s in sc["series"]):
        return "no scaling results to plot"
    fig, ax = plt.subplots(figsize=(9, 6.2), dpi=110)
    for s in sc["series"]:
        pts = s["points"]
        if not pts:
            continue
        xs = [p["nfds"] for p in pts]
        ys = [p["median"] * 1e6 for p in pts]
        style = dict(STYLES.get(s["impl"], {}))
        label = (f"{s['mechanism']} - C loop (floor)" if s["impl"] == "C floor"
                 else f"{s['mechanism']} - {s['impl']}")
        ax.plot(xs, ys, color=COLORS.get(s["mechanism"], "black"), label=label, **style)
        st = s.get("stopped")
        if st:
            ax.plot([xs[-1]], [ys[-1]], marker="X", markersize=11,
                    color=COLORS.get(s["mechanism"], "black"), linestyle="none")
            ax.annotate(f"stdlib select() stops here:\nValueError for fd >= FD_SETSIZE "
                        f"({sc['fd_setsize']})",
                        xy=(xs[-1], ys[-1]), xytext=(xs[-1] * 1.6, ys[-1] * 0.12),
                        fontsize=8.5, color=COLORS.get(s["mechanism"], "black"),
                        arrowprops=dict(arrowstyle="->", color="0.3", lw=0.8))
    if any(s.get("stopped") for s in sc["series"]):
        ax.axvline(sc["fd_setsize"], color="0.6", linewidth=0.8, linestyle="-.")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("registered (watched) file descriptors")
    ax.set_ylabel("time of one zero-timeout wait, microseconds (median)")
    m = data["machine"]
    ax.set_title(f"One wait with {sc['nready']} ready fds: select O(n), poll O(n), "
                 f"epoll O(ready)\n"
                 f"{m['cpu_model']}, {m['cores']} cores, {m['system']} {m['kernel']}, "
                 f"Python {m['python']}, fastsel {m['fastsel_version']}", fontsize=10)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    note = data.get("fd_limit", {}).get("note")
    if note:
        fig.text(0.01, 0.008, note, fontsize=7.5, color="0.35", va="bottom")
    ax.legend(fontsize=8, ncol=3, loc="upper left", frameon=True)
    fig.tight_layout(rect=(0, 0.025 if note else 0, 1, 1))
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return None
