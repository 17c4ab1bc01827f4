"""Builds the side-by-side section of benches/RESULTS.md from compare.sh's JSON files.

Usage: python3 benches/report.py OUT_DIR COMMAND [perconn]
(with `perconn`, only the per-message and per-connection section)
"""
import json
import os
import platform
import subprocess
import sys

out, command = sys.argv[1], sys.argv[2]
only_perconn = len(sys.argv) > 3 and sys.argv[3] == "perconn"


def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def errors(r):
    n = sum((r or {}).get("errors", {}).values())
    return str(n)


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def lat(r, key):
    return r["latency_us"][key] if r else None


def load_rr(name):
    """The rr runs NAME, NAME.2, ... merged: the median of each figure, errors summed."""
    runs = [r for r in [load(name)] + [load(f"{name}.{i}") for i in range(2, 10)] if r]
    if not runs:
        return None
    mid = lambda xs: sorted(xs)[len(xs) // 2]
    merged = dict(runs[0])
    merged["requests_per_s"] = mid([r["requests_per_s"] for r in runs])
    merged["latency_us"] = {k: mid([r["latency_us"][k] for r in runs]) for k in runs[0]["latency_us"]}
    merged["errors"] = {k: sum(r["errors"].get(k, 0) for r in runs) for k in runs[0]["errors"]}
    merged["runs"] = len(runs)
    return merged


def cpu_use(name):
    """CPU use over the run from compare.sh (NAME.cpu.json): proxy CPU seconds, wall time, both CPUs' load."""
    return load(name + ".cpu")


def pct(v):
    return "-" if v is None else f"{v * 100:.0f}%"


def proxy_share(c):
    return c["proxy_cpu_s"] / c["wall_s"] if c and c.get("proxy_cpu_s") is not None and c["wall_s"] else None


def us(v):
    if v is None:
        return "-"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


lines = []
add = lines.append
versions = {
    "dante-server": sh("dpkg-query -W -f='${Version}' dante-server"),
    "microsocks": sh("dpkg-query -W -f='${Version}' microsocks"),
    "squid": sh("dpkg-query -W -f='${Version}' squid"),
    "haproxy": sh("dpkg-query -W -f='${Version}' haproxy"),
    "egressd": sh("git rev-parse --short HEAD"),
}
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
add("## Side by side: egressd, Dante, microsocks, Squid, HAProxy and direct (issue 4)")
add("")
add(f"Command: `{command}` (one run; every figure below comes from it). Machine: {os.cpu_count()} vCPU {cpu}, "
    f"Linux {platform.release()}. Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
add("Proxy under test pinned to CPU 0; load generator (`egressd-loadgen`, one glommio thread) and sinks pinned to CPU 1. "
    "Each proxy leaves from its own address (egressd 127.0.0.2, Dante 127.0.0.3, microsocks 127.0.0.4, Squid 127.0.0.5, "
    "HAProxy 127.0.0.6), checked with `--expect-egress` before measuring. HAProxy is a plain TCP relay "
    "(no handshake: the upper bound) and, for the HTTP rows, an HTTP-mode reverse proxy in front of the sink.")
add("")

SOCKS = [("direct (no proxy)", "direct"), ("egressd SOCKS5", "egressd-socks5"), ("egressd SOCKS5 + password", "egressd-socks5auth"),
         ("egressd HTTP CONNECT", "egressd-connect"), ("Dante SOCKS5", "dante"), ("microsocks SOCKS5", "microsocks"),
         ("Squid HTTP CONNECT", "squid"), ("HAProxy TCP relay", "haproxy")]
egr = load("egressd-socks5-churn")
base = load("direct-churn")
add("### churn: connect, handshake, 100-byte request, 100-byte response, close (32 connections in a closed loop)")
add("")
add("Proxy CPU: the proxy's processes' CPU time over the run (warm-up included) as a share of one CPU, and per "
    "connection; CPU 1 busy: the load generator's and sinks' CPU, so a row near 100% there is bound by the client side, "
    "not by the proxy.")
add("")
add("| proxy | connections/s | vs direct | vs egressd | p50 | p99 | proxy CPU | proxy CPU per connection | CPU 1 busy | errors |")
add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, key in SOCKS + [("egressd HTTP forward", "egressd-http"), ("Squid HTTP forward", "squid-http"), ("HAProxy HTTP mode", "haproxy-http")]:
    r = load(key + "-churn")
    if not r:
        continue
    c = r["connections_per_s"]
    u = cpu_use(key + "-churn")
    share = proxy_share(u)
    per_conn = us(share / c * 1e6) if share is not None and c else "-"
    add(f"| {label} | {c:,.0f} | {ratio(c, base and base['connections_per_s'])} | {ratio(c, egr and egr['connections_per_s'])} | "
        f"{us(lat(r, 'p50'))} | {us(lat(r, 'p99'))} | {pct(share)} | {per_conn} | {pct(u and u['cpu1_busy'])} | {errors(r)} |")
add("")
add("### rr: request/response on 50 open tunnels at a fixed rate well below saturation, latency from the scheduled send")
add("")
rr_runs = (load_rr("direct-rr") or {}).get("runs", 1)
add(f"Each row is the median, figure by figure, of {rr_runs} back-to-back run{'s' if rr_runs > 1 else ''}: a single run's tail on this shared VM moves "
    "by hundreds of microseconds from run to run. Added latency is the row's figure minus direct's.")
add("")
add("| proxy | requests/s | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | p99 vs direct | added p99 vs egressd | errors |")
add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
d = load_rr("direct-rr")
e_rr = load_rr("egressd-socks5-rr")
e_added = lat(e_rr, "p99") - lat(d, "p99") if e_rr and d else None
for label, key, ref in [(l, k + "-rr", d) for l, k in SOCKS] + [("egressd HTTP forward", "egressd-http-rr", d), ("Squid HTTP forward", "squid-http-rr", d), ("HAProxy HTTP mode", "haproxy-http-rr", d)]:
    r = load_rr(key)
    if not r:
        continue
    added = [lat(r, k) - lat(ref, k) if ref else None for k in ("p50", "p99", "p999")]
    add(f"| {label} | {r['requests_per_s']:,.0f} | {us(lat(r, 'p50'))} | {us(lat(r, 'p99'))} | {us(lat(r, 'p999'))} | "
        + " | ".join(us(a) for a in added)
        + f" | {ratio(lat(r, 'p99'), lat(ref, 'p99') if ref else None)} | {ratio(added[1], e_added) if key != 'direct-rr' else '-'} | {errors(r)} |")
add("")
for streams in (1, 4):
    add(f"### bulk: {streams} stream{'s' if streams > 1 else ''} uploading for the whole run")
    add("")
    add("| proxy | Gbit/s | vs direct | vs egressd | proxy CPU | CPU 1 busy | errors |")
    add("|---|---:|---:|---:|---:|---:|---:|")
    b = load(f"direct-bulk{streams}")
    e = load(f"egressd-socks5-bulk{streams}")
    for label, key in SOCKS:
        r = load(f"{key}-bulk{streams}")
        if not r:
            continue
        g = r["gbit_per_s"]
        u = cpu_use(f"{key}-bulk{streams}")
        add(f"| {label} | {g:.2f} | {ratio(g, b and b['gbit_per_s'])} | {ratio(g, e and e['gbit_per_s'])} | "
            f"{pct(proxy_share(u))} | {pct(u and u['cpu1_busy'])} | {errors(r)} |")
    add("")
add("### idle: resident memory per idle tunnel")
add("")
add("| proxy | tunnels | RSS before | RSS with tunnels | per tunnel | vs egressd |")
add("|---|---:|---:|---:|---:|---:|")
idle_rows = []
for label, key in [("egressd", "egressd-idle"), ("Dante", "dante-idle"), ("microsocks", "microsocks-idle"), ("Squid", "squid-idle")]:
    path = os.path.join(out, key + ".rss.json")
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    n = r["tunnels"] or 0
    per = (r["rss_after_kib"] - r["rss_before_kib"]) * 1024 / n if n else 0
    idle_rows.append((label, n, r, per))
e_per = next((per for label, _, _, per in idle_rows if label == "egressd"), None)
for label, n, r, per in idle_rows:
    add(f"| {label} | {n:,} | {r['rss_before_kib'] / 1024:.1f} MiB | {r['rss_after_kib'] / 1024:.1f} MiB | {per:,.0f} bytes | {ratio(per, e_per)} |")
add("")
add("### egressd with a 10,000-rule policy against a 1-rule policy (churn, SOCKS5)")
add("")
r10, r1 = load("egressd10k-churn"), load("egressd1-churn")
if r10 and r1:
    add("| policy | connections/s | p50 | p99 |")
    add("|---|---:|---:|---:|")
    add(f"| 1 rule | {r1['connections_per_s']:,.0f} | {us(lat(r1, 'p50'))} | {us(lat(r1, 'p99'))} |")
    add(f"| 10,000 rules (`synth::policy_text(10000)`) | {r10['connections_per_s']:,.0f} | {us(lat(r10, 'p50'))} | {us(lat(r10, 'p99'))} |")
    add("")
    add(f"Cost of the large policy: {(1 - r10['connections_per_s'] / r1['connections_per_s']) * 100:.1f}% of connections/s.")
PERCONN = [("direct (no proxy)", "direct"), ("egressd SOCKS5", "egressd-socks5"), ("egressd HTTP CONNECT", "egressd-connect"),
           ("egressd HTTP forward", "egressd-http"),
           ("compio ceiling SOCKS5 (COOP_TASKRUN, SINGLE_ISSUER)", "ceiling"),
           ("compio ceiling SOCKS5 (no ring flags)", "ceiling-nocoop"), ("Dante SOCKS5", "dante"), ("microsocks SOCKS5", "microsocks"),
           ("Squid HTTP CONNECT", "squid"), ("Squid HTTP forward", "squid-http"), ("HAProxy TCP relay", "haproxy"),
           ("HAProxy HTTP mode", "haproxy-http")]


def per_request(r):
    v = (r or {}).get("proxy_cpu_us_per_request")
    return "-" if v is None else f"{v:.1f} µs"


def ipis(key, rate):
    """The proxy CPU's IPIs per request (or connection) over the run, warm-up included."""
    c = cpu_use(key)
    if not c or c.get("proxy_cpu_ipis") is None or not rate:
        return "-"
    return f"{c['proxy_cpu_ipis'] / (rate * c['wall_s']):.2f}"


def phase(r, which, key):
    p = (r or {}).get(which)
    return us(p[key]) if p else "-"


# The per-message and per-connection rows have a section of their own (`perconn`): a full run
# writes both sections from the same files.
if only_perconn:
    lines.clear()
    add("## Per-message and per-connection cost, every peer (issue 10)")
    add("")
    add(f"Command: `{command}`. Machine: {os.cpu_count()} vCPU {cpu}, Linux {platform.release()}; "
        f"egressd {versions['egressd']}. Proxy pinned to CPU 0, load generator and sinks to CPU 1.")
    add("")
if only_perconn and any(load(k + "-rrsat") for _, k in PERCONN):
    add("### rr at saturation: 100-byte request and response on 20 kept-open tunnels, closed loop")
    add("")
    add("Proxy CPU per request from `--proxy-pid` (the proxy's threads, over the measurement).")
    add("")
    add("| proxy | requests/s | vs direct | vs egressd | proxy CPU per request | IPIs per request | p50 | p99 | errors |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    d, e = load("direct-rrsat"), load("egressd-socks5-rrsat")
    for label, key in PERCONN:
        r = load(key + "-rrsat")
        if not r:
            continue
        q = r["requests_per_s"]
        add(f"| {label} | {q:,.0f} | {ratio(q, d and d['requests_per_s'])} | {ratio(q, e and e['requests_per_s'])} | "
            f"{per_request(r)} | {ipis(key + '-rrsat', q)} | {us(lat(r, 'p50'))} | {us(lat(r, 'p99'))} | {errors(r)} |")
    add("")
    add("### serial: one connection at a time (connect, handshake, 100-byte exchange, close)")
    add("")
    add("| proxy | connections/s | vs direct | vs egressd | handshake p50 | handshake p99 | exchange p50 | proxy CPU per connection | IPIs per connection | errors |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    d, e = load("direct-serial"), load("egressd-socks5-serial")
    for label, key in PERCONN:
        r = load(key + "-serial")
        if not r:
            continue
        c = r["connections_per_s"]
        add(f"| {label} | {c:,.0f} | {ratio(c, d and d['connections_per_s'])} | {ratio(c, e and e['connections_per_s'])} | "
            f"{phase(r, 'handshake_us', 'p50')} | {phase(r, 'handshake_us', 'p99')} | {phase(r, 'exchange_us', 'p50')} | "
            f"{per_request(r)} | {ipis(key + '-serial', c)} | {errors(r)} |")
    add("")

WRK = [("direct (no proxy)", "direct"), ("egressd SOCKS5", "egressd-socks5"), ("egressd HTTP forward", "egressd-http"),
       ("compio ceiling SOCKS5", "ceiling"), ("Dante SOCKS5", "dante"), ("microsocks SOCKS5", "microsocks"),
       ("Squid HTTP forward", "squid-http"), ("HAProxy TCP relay", "haproxy")]
if only_perconn and any(load(f"wrk-{k}-keepalive") for _, k in WRK):
    add("### wrk against nginx: keep-alive and one connection per request")
    add("")
    add("wrk (one thread, 20 connections, best of two) and nginx (one worker, a 98-byte body) on CPU 1, "
        "the proxy on CPU 0; SOCKS5 through proxychains4, HTTP forward with absolute-form request lines. "
        "With `Connection: close` every request is a new connection and, through a proxy, a new handshake.")
    add("")
    add("| proxy | keep-alive requests/s | vs direct | CPU per request | IPIs per request | p99 | "
        "Connection: close requests/s | vs direct | CPU per request | IPIs per request | errors |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    dk, dc = load("wrk-direct-keepalive"), load("wrk-direct-close")
    for label, key in WRK:
        k, c = load(f"wrk-{key}-keepalive"), load(f"wrk-{key}-close")
        if not k or not c:
            continue
        add(f"| {label} | {k['requests_per_s']:,.0f} | {ratio(k['requests_per_s'], dk and dk['requests_per_s'])} | "
            f"{per_request(k)} | {k['ipis_per_request']:.2f} | {k['p99'] or '-'} | "
            f"{c['requests_per_s']:,.0f} | {ratio(c['requests_per_s'], dc and dc['requests_per_s'])} | "
            f"{per_request(c)} | {c['ipis_per_request']:.2f} | {k['errors'] + c['errors']} |")
    add("")

print("\n".join(lines))
