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
    header += ["C floor/call", "fastsel/floor"]
    rows = []
    for r in results:
        row = [r["op"], r["size"]]
        row += [fmt_time(r["median"].get(i)) for i in impls]
        row += [fmt_ratio(r.get("ratio"))]
        pe = r.get("per_event") or {}
        row += [fmt_time(pe.get(i)) if pe else "-" for i in impls]
        row += [fmt_time(r.get("floor"))]
        vs = (r.get("vs_floor") or {}).get("fastsel")
        row += [fmt_ratio(vs)]
        rows.append(row)
    n = len(impls)
    right = set(range(2, 2 + 2 * n + 3))
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
    header = ["fds"] + [_series_label(s, sc) for s in series]
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
            print(f"  {_series_label(s, sc)}: stops at {st['nfds']} fds "
                  f"(highest fd {st['max_fd']} >= FD_SETSIZE {sc['fd_setsize']}): "
                  f"{st['error']}", file=out)
    growth = []
    for s in series:
        pts = s["points"]
        if len(pts) >= 2 and pts[0]["median"] > 0:
            a, b = pts[0], pts[-1]
            slope = (math.log(b["median"] / a["median"]) / math.log(b["nfds"] / a["nfds"]))
            growth.append(f"{_series_label(s, sc)}: x{b['median'] / a['median']:.1f} "
                          f"from {a['nfds']} to {b['nfds']} fds (log-log slope {slope:.2f})")
    if growth:
        print("  growth: " + "\n          ".join(growth), file=out)


def _series_label(s: Dict[str, Any], sc: Dict[str, Any]) -> str:
    if s["mechanism"] == "selector":
        return f"{sc.get('selector_class') or 'selector'}.select {s['impl']}"
    return f"{s['mechanism']} {s['impl']}"


def print_extras(data: Dict[str, Any], out: TextIO) -> None:
    mem = data.get("memory")
    if mem:
        per = mem["bytes_per_registration"]
        print(f"\nMemory per registration ({mem['class']}, {mem['registrations']} sockets, "
              "tracemalloc): " + ", ".join(f"{i} {b:.0f} B" for i, b in per.items()), file=out)
    sc = data.get("syscalls") or []
    if not sc:
        return
    print("\nSystem calls per modify() (strace -c -f: a child doing N modifies minus the "
          "same child doing none)", file=out)
    rows = []
    for r in sc:
        what = {"syscalls/modify-data": "data only", "syscalls/modify-events": "events"}
        rows.append([f"{r['class']}.modify ({what.get(r['name'], r['name'])})", r["impl"],
                     f"{r['total_per_modify']:.2f}",
                     ", ".join(f"{k} {v:.2f}" for k, v in r["per_modify"].items()) or "-"])
    table(["operation", "impl", "syscalls/modify", "which"], rows, out, right={2})


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


ECHO_LABELS = {"protocol": "Protocol", "sock": "sock_recv/sock_sendall"}


def print_echo(results: List[Dict[str, Any]], impls: List[str], client: str,
               out: TextIO) -> None:
    if not results:
        return
    conns = results[0]["conns"]
    print(f"\nasyncio echo server, {conns} connections, client: {client}; server in its "
          f"own process; medians of {len(results[0]['runs'])} interleaved runs; CPU/req = "
          "user+sys CPU of the server process per request", file=out)
    header = ["variant", "message", "malloc", "event loop", "req/s", "p50", "p99", "CPU/req",
              "req/s vs stdlib", "stdlib CPU/req / this"]
    rows = []
    base = {(r["variant"], r["size"], r["malloc"]): r for r in results if r["impl"] == "stdlib"}
    for r in results:
        m = r["median"]
        b = base.get((r["variant"], r["size"], r["malloc"]))
        rps_ratio = m["rps"] / b["median"]["rps"] if b and b["median"]["rps"] else None
        cpu_ratio = (b["median"]["cpu_per_request_s"] / m["cpu_per_request_s"]
                     if b and m["cpu_per_request_s"] else None)
        rows.append([ECHO_LABELS[r["variant"]], size_label(r["size"]), r["malloc"],
                     _loop_label(r["impl"]), f"{m['rps']:,.0f}", fmt_time(m["p50_s"]),
                     fmt_time(m["p99_s"]), fmt_time(m["cpu_per_request_s"]),
                     fmt_ratio(rps_ratio), fmt_ratio(cpu_ratio)])
    table(header, rows, out, right=range(4, 10))
    print_echo_split(results, out)


def print_echo_split(results: List[Dict[str, Any]], out: TextIO) -> None:
    """Where the server's CPU goes: kernel, Python, selector (see echo.py)."""
    every = results[0].get("sample_every", 1)
    timed = "every select() call" if every == 1 else f"every {every}th select() call, scaled"
    print("\nWhere the server's CPU goes, per request (medians): kernel = system time "
          "(getrusage); selector = thread CPU time inside selector.select() (thread_time() "
          f"around {timed}; includes its epoll_wait's kernel time); Python = user time - "
          "selector", file=out)
    header = ["variant", "message", "malloc", "event loop", "CPU/req", "kernel", "Python",
              "selector", "kernel %", "Python %", "selector %", "events/select",
              "page faults/req", "default malloc / this"]
    plain = {(r["variant"], r["size"], r["impl"]): r for r in results
             if r["malloc"] == "default"}
    rows, overheads = [], []
    for r in results:
        m = r["median"]
        d = plain.get((r["variant"], r["size"], r["impl"]))
        gain = (d["median"]["cpu_per_request_s"] / m["cpu_per_request_s"]
                if d and r["malloc"] != "default" and m["cpu_per_request_s"] else None)
        eps = m.get("events_per_select")
        rows.append([ECHO_LABELS[r["variant"]], size_label(r["size"]), r["malloc"],
                     _loop_label(r["impl"]), fmt_time(m["cpu_per_request_s"]),
                     fmt_time(m.get("sys_cpu_per_request_s")),
                     fmt_time(m.get("python_cpu_per_request_s")),
                     fmt_time(m.get("selector_cpu_per_request_s")),
                     _pct(m.get("kernel_share")), _pct(m.get("python_share")),
                     _pct(m.get("selector_share")), "-" if eps is None else f"{eps:.1f}",
                     "-" if m.get("page_faults_per_request") is None
                     else f"{m['page_faults_per_request']:.2f}", fmt_ratio(gain)])
        if m.get("instrumentation_share") is not None:
            overheads.append(m["instrumentation_share"])
    table(header, rows, out, right=range(4, 14))
    if overheads:
        print(f"  instrumentation (clock reads + wrapper call, measured in the server): "
              f"{_pct(min(overheads))}-{_pct(max(overheads))} of the server's CPU", file=out)


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
    ctl = [r["ratio"] for r in data.get("micro", []) if r["name"].startswith("ctl/")
           and "ratio" in r]
    if ctl:
        lines.append(f"epoll control calls: stdlib/fastsel geometric mean {gmean(ctl):.2f}x "
                     f"(range {min(ctl):.2f}x-{max(ctl):.2f}x)")
    lines += _echo_summary(data.get("echo", []), gmean)
    return lines


def _echo_summary(echo: List[Dict[str, Any]], gmean: Any) -> List[str]:
    lines = []
    base = {(r["variant"], r["size"], r["malloc"]): r for r in echo if r["impl"] == "stdlib"}

    def ratios(impl: str, key: str, inverse: bool, malloc: str) -> List[float]:
        out = []
        for r in echo:
            b = base.get((r["variant"], r["size"], r["malloc"]))
            if r["impl"] != impl or b is None or r["malloc"] != malloc:
                continue
            x, y = b["median"].get(key), r["median"].get(key)
            if x and y:
                out.append(x / y if inverse else y / x)
        return out
    mallocs = list(dict.fromkeys(r["malloc"] for r in echo))
    for malloc in mallocs:
        for impl in ("fastsel", "uvloop"):
            cpu = gmean(ratios(impl, "cpu_per_request_s", True, malloc))
            user = gmean(ratios(impl, "user_cpu_per_request_s", True, malloc))
            rps = gmean(ratios(impl, "rps", False, malloc))
            if cpu and user and rps:
                lines.append(f"echo (malloc {malloc}), {impl} against asyncio on the stdlib "
                             f"selector (geometric means): server CPU per request "
                             f"stdlib/{impl} {cpu:.2f}x (user-space CPU {user:.2f}x), "
                             f"requests/s {impl}/stdlib {rps:.2f}x")
    for part in ("kernel", "selector"):
        for impl in ("stdlib", "fastsel"):
            xs = [r["median"][f"{part}_share"] for r in echo if r["impl"] == impl
                  and r["median"].get(f"{part}_share") is not None]
            if xs:
                lines.append(f"echo: {part} share of the server's CPU, {impl}: "
                             f"{100 * min(xs):.1f}%-{100 * max(xs):.1f}%")
    plain = {(r["variant"], r["size"], r["impl"]): r for r in echo if r["malloc"] == "default"}
    for malloc in mallocs:
        if malloc == "default":
            continue
        for variant in ("protocol", "sock"):
            xs = []
            for r in echo:
                d = plain.get((r["variant"], r["size"], r["impl"]))
                if (r["malloc"] == malloc and r["variant"] == variant and d
                        and r["median"]["cpu_per_request_s"]):
                    xs.append(d["median"]["cpu_per_request_s"] / r["median"]["cpu_per_request_s"])
            if xs:
                lines.append(f"echo, {variant}: server CPU per request with malloc default / "
                             f"with {malloc}: {min(xs):.2f}x-{max(xs):.2f}x")
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
          "kqueue": "tab:purple", "selector": "tab:orange"}
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
                 else _series_label(s, sc).replace(" ", " - ", 1))
        ax.plot(xs, ys, color=COLORS.get(s["mechanism"], "black"), label=label, **style)
        st = s.get("stopped")
        if st:
            ax.plot([xs[-1]], [ys[-1]], marker="X", markersize=11,
                    color=COLORS.get(s["mechanism"], "black"), linestyle="none")
            what = "select()" if s["mechanism"] == "select" else _series_label(s, sc)
            ax.annotate(f"stdlib {what} stops here:\nValueError for fd >= FD_SETSIZE "
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
