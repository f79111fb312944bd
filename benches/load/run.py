#!/usr/bin/env python3
"""End-to-end load benchmark of sipgw against nginx as a plain reverse proxy.

    python3 benches/load/run.py                  # build release binaries, 3 runs per row
    python3 benches/load/run.py --write-results  # ... and rewrite benches/RESULTS.md
    python3 benches/load/run.py --smoke --bin-dir target/debug --json out.json   # CI
    python3 benches/load/run.py --count          # instructions and syscalls per request
                                                 # (count.py; needs valgrind and strace)

--bin-dir must hold sipgw and sipgw-vendor-sim (dev/): `cargo build --workspace --bins`.

Everything runs on loopback, on one machine, at the same time as the load generator:
  stand-in  nginx serving the vendor's two answers as static JSON (sipgw-vendor-sim
            --fast --always-succeed when nginx cannot be had)
  nginx     nginx as a plain reverse proxy (upstream keep-alive) in front of the stand-in:
            the peer baseline; no JWT check, no quota, no audit
  sipgw     sipgw in front of the stand-in, quotas that never bind, audit on local disk
            with fsync = "always"
wrk drives each with the same connections, duration and requests (benches/load/change.lua:
valid JWTs of many callers, each for its own agent). Rows:
  direct stand-in, nginx proxy, sipgw        peak throughput and latency
  sipgw 401 (bad tokens), sipgw 429 (quota)  refusals, which attacks cost; the bad
                                             tokens repeat, as a misconfigured client's do
  sipgw 401 (a new forgery each time)        every request needs a signature check
  direct / sipgw at 50 % of sipgw's peak     added latency at a fixed, sustainable rate
plus sipgw's footprint: binary size, idle RSS, peak RSS, CPU per 10k requests, start-up
time to a ready /readyz; and its memory per key: RSS after --memory-agents (100,000)
changes, each for a new agent with its own Idempotency-Key and a current password the
vendor rejects, so that every per-key store (quotas, lockout records, idempotency
outcomes) holds one entry per agent, with the default limits. Needs nginx and wrk (installed with apt-get when missing and
possible), python3 and cargo.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import count
import results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LUA = os.path.join(ROOT, "benches", "load", "change.lua")
RESULTS = os.path.join(ROOT, "benches", "RESULTS.md")

TOKEN_PATH = "/apigovernance/api/oauth/tokenByAkSk"
ISSUER = "https://sso.load.internal/realms/bench"
APP_KEY = "load-app-key"
APP_SECRET = "load-app-secret-not-real"
TOKEN_ANSWER = '{"AccessToken":"load-test-access-token","Expires":"3600","CreateTime":"0"}'
UPDATE_ANSWER = '{"resultCode":"0","resultMessage":"success"}'
# The memory row's changes: a current password the vendor rejects (the agents are unknown).
MEMORY_BODY = '{"accountPwd":"Wrong~Pass11","newPhonePwd":"Sip~Phone2025"}'
# Pause per connection between requests in the fixed-rate rows.
PAUSE_MS = 20
# Keep-alive connections of the counting mode.
COUNT_CONNECTIONS = 8


def log(message):
    print(f"[load] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools(install, needed=("wrk",)):
    """nginx and the `needed` tools (Debian packages of the same names), installed when
    missing (and `install`); returns nginx's path, or None when nginx cannot be had."""
    missing = [exe for exe in ("nginx", *needed) if not find(exe)]
    if missing and install and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else (["sudo"] if shutil.which("sudo") else None)
        if sudo is not None:
            log(f"installing {' '.join(missing)} with apt-get")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            install = sudo + ["apt-get", "install", "-y", *missing]
            if subprocess.run(install, env=env, capture_output=True).returncode != 0:
                subprocess.run(sudo + ["apt-get", "update"], env=env, capture_output=True)
                subprocess.run(install, env=env, capture_output=True)
            # Debian starts the packaged nginx service; the benchmark runs its own.
            subprocess.run(sudo + ["service", "nginx", "stop"], capture_output=True)
    for exe in needed:
        if not find(exe):
            sys.exit(f"{exe} is needed (apt-get install {exe})")
    return find("nginx")


def find(exe):
    return shutil.which(exe) or next(
        (p for p in (f"/usr/sbin/{exe}", f"/usr/bin/{exe}") if os.access(p, os.X_OK)), None)


class Process:
    """A child process that is stopped when the benchmark ends."""

    def __init__(self, args, log_path, env=None):
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self.pid = self.proc.pid

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_port(port, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.01)
    sys.exit(f"{what} did not listen on {port}")


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def proc_status(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """CPU seconds (user + system) of `pid` and, for nginx's master, of its workers."""
    total = 0.0
    for p in [pid, *children(pid)]:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="sipgw-load-")
        self.children = []
        self.bin = args.bin_dir

    def path(self, name):
        return os.path.join(self.dir, name)

    def spawn(self, args, name, env=None):
        child = Process(args, self.path(name + ".log"), env)
        self.children.append(child)
        return child

    def close(self, failed=False):
        for child in reversed(self.children):
            child.stop()
            if failed:
                with open(child.log.name, errors="replace") as f:
                    tail = f.readlines()[-15:]
                log(f"--- last lines of {os.path.basename(child.log.name)}:\n" + "".join(tail))
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- the parts -------------------------------------------------------------------

    def mint_tokens(self, callers):
        """`callers` ES256 tokens, caller i for agent i (self-service), plus one forged set."""
        sipgw = os.path.join(self.bin, "sipgw")
        key, jwks = self.path("dev-key.pem"), self.path("jwks.json")
        lines = []
        for i in range(callers):
            cmd = [sipgw, "dev-token", "--key-file", key, "--issuer", ISSUER,
                   "--sub", f"caller{i}", "--agent", f"agent{i}", "--lifetime-secs", "86400"]
            if i == 0:
                cmd += ["--new-key", "--jwks-out", jwks]
            token = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
            lines.append(f"agent{i} {token}")
        with open(self.path("tokens.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        # The same tokens with their signature's first characters changed: every one is
        # well formed and refused with 401; the first time after a signature check, then
        # from sipgw's refusal cache (what a client replaying a bad token costs). The
        # "forge" mode of change.lua makes a new one for every request instead.
        with open(self.path("bad-tokens.txt"), "w") as f:
            for line in lines:
                agent, token = line.split(" ")
                head, sig = token.rsplit(".", 1)
                sig = ("A" if sig[0] != "A" else "B") * 8 + sig[8:]
                f.write(f"{agent} {head}.{sig}\n")
        # Caller i changing agent i+1, which it may not: refused with 403 (the counting
        # mode's 403 row).
        with open(self.path("other-agent.txt"), "w") as f:
            for i, line in enumerate(lines):
                f.write(f"agent{(i + 1) % len(lines)} {line.split(' ')[1]}\n")
        # One caller only: its quota is spent after the first change (the 429 row).
        with open(self.path("one-caller.txt"), "w") as f:
            f.write(lines[0] + "\n")
        return jwks

    def start_stand_in(self, nginx):
        port = free_port()
        if nginx:
            conf = self.nginx_conf("stand-in", f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 1000000;
        default_type application/json;
        location = {TOKEN_PATH} {{ return 200 '{TOKEN_ANSWER}'; }}
        location / {{ return 200 '{UPDATE_ANSWER}'; }}
    }}""", workers=1)
            child = self.spawn([nginx, "-p", self.dir, "-c", conf], "stand-in")
            kind = "nginx (static answers)"
        else:
            child = self.spawn([os.path.join(self.bin, "sipgw-vendor-sim"), "--listen",
                                f"127.0.0.1:{port}", "--fast", "--always-succeed",
                                "--app-key", APP_KEY],
                               "stand-in", env=dict(os.environ, SIM_APP_SECRET=APP_SECRET))
            kind = "sipgw-vendor-sim --fast --always-succeed"
        wait_port(port, "the vendor stand-in")
        return child, port, kind

    def start_nginx_proxy(self, nginx, upstream_port):
        port = free_port()
        conf = self.nginx_conf("proxy", self.proxy_block(upstream_port, port), workers="auto")
        child = self.spawn([nginx, "-p", self.dir, "-c", conf], "nginx-proxy")
        wait_port(port, "nginx (proxy)")
        return child, port

    @staticmethod
    def proxy_block(upstream_port, port):
        """nginx as a plain reverse proxy on `port`, keep-alive to the upstream."""
        return f"""
    upstream stand_in {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://stand_in;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""

    def nginx_conf(self, name, http_block, workers, master=True):
        """An nginx config file; `master=False` makes it one process doing all the work
        (the counting mode runs it so under valgrind and strace)."""
        path = self.path(f"nginx-{name}.conf")
        user = "user root;" if os.geteuid() == 0 else ""
        temp = "".join(f"    {kind}_temp_path {self.path(name + '-' + kind)};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        with open(path, "w") as f:
            f.write(f"""{user}
worker_processes {workers};
{'' if master else 'master_process off;'}
daemon off;
pid {self.path(name + '.pid')};
error_log {self.path(name + '-error.log')} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}{http_block}
}}
""")
        return path

    def sipgw_config(self, name, vendor_port, jwks, per_caller="{ burst = 1000000, per_secs = 1 }",
                     per_agent="{ burst = 1000000, per_secs = 1 }", fsync=None):
        port, admin = free_port(), free_port()
        path = self.path(f"{name}.toml")
        with open(path, "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
max_connections = 4096
shutdown_grace_secs = 2

[auth]
issuer = "{ISSUER}"
audiences = ["sipgw"]
jwks_file = "{jwks}"
# The memory row's caller (`sipgw dev-token --admin`) may change any agent's password.
admin_scopes = ["sipgw.admin"]

[vendor]
base_url = "http://127.0.0.1:{vendor_port}"
app_key = "{APP_KEY}"
allow_insecure_http = true

[rate_limit]
per_agent = {per_agent}
per_caller = {per_caller}

[audit]
path = "{self.path(name + '-audit/sipgw-audit.jsonl')}"
fsync = "{fsync or self.args.fsync}"
""")
        return path, port, admin

    def start_sipgw(self, config, admin_port, name, wrapper=(), ready_secs=20):
        """Starts sipgw (under `wrapper`: valgrind, strace) and waits for /readyz."""
        env = dict(os.environ, SIPGW_APP_SECRET=APP_SECRET)
        env.setdefault("RUST_LOG", "info")
        started = time.monotonic()
        child = self.spawn([*wrapper, os.path.join(self.bin, "sipgw"), "serve", "--config",
                            config], name, env=env)
        deadline = started + ready_secs
        while get_status(f"http://127.0.0.1:{admin_port}/readyz") != 200:
            if time.monotonic() > deadline or child.proc.poll() is not None:
                sys.exit(f"sipgw ({name}) did not become ready; see {child.log.name}")
            time.sleep(0.001)
        return child, time.monotonic() - started

    def memory_row(self, jwks, agents, connections=8):
        """RSS of a fresh sipgw (default limits, but a caller quota that never binds) before
        and after `agents` changes, each for a new agent with its own Idempotency-Key, each
        rejected by the vendor: every per-key store then holds one entry per agent (until
        its cap). The stand-in is sipgw-vendor-sim without agents (every account unknown:
        resultCode "1"); the audit trail does not fsync (durability does not change memory)."""
        import threading
        port = free_port()
        self.spawn([os.path.join(self.bin, "sipgw-vendor-sim"), "--listen", f"127.0.0.1:{port}",
                    "--fast", "--app-key", APP_KEY], "memory-vendor",
                   env=dict(os.environ, SIM_APP_SECRET=APP_SECRET))
        wait_port(port, "the rejecting vendor stand-in")
        sipgw = os.path.join(self.bin, "sipgw")
        token = subprocess.run([sipgw, "dev-token", "--key-file", self.path("dev-key.pem"),
                                "--issuer", ISSUER, "--sub", "memory-admin", "--admin",
                                "--lifetime-secs", "86400"],
                               check=True, capture_output=True, text=True).stdout.strip()
        config, gw_port, admin = self.sipgw_config(
            "sipgw-memory", port, jwks, per_agent="{ burst = 3, per_secs = 1800 }",
            fsync="never")
        gateway, _ = self.start_sipgw(config, admin, "sipgw-memory")
        time.sleep(0.5)
        before = proc_status(gateway.pid, "VmRSS")
        results, threads = [], []
        started = time.monotonic()
        for c in range(connections):
            t = threading.Thread(target=change_many, args=(gw_port, token, c, agents, connections,
                                                            results))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        after = proc_status(gateway.pid, "VmRSS")
        answered = sum(r[0] for r in results)
        row = {"agents": agents, "answered": answered,
               "errors": sum(r[1] for r in results) + agents - answered,
               "seconds": seconds, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
               "bytes_per_agent": (after - before) * 1024 / max(agents, 1),
               "peak_rss_mib": proc_status(gateway.pid, "VmHWM") / 1024,
               "entries": store_entries(admin)}
        gateway.stop()
        log(f"memory: {agents} agents, RSS {row['rss_before_mib']:.1f} -> "
            f"{row['rss_after_mib']:.1f} MiB ({row['bytes_per_agent']:.0f} bytes per agent), "
            f"entries {row['entries']}, errors {row['errors']}")
        return row

    # --- load --------------------------------------------------------------------------

    def wrk(self, port, tokens, mode, duration, connections, pause_ms=0):
        threads = min(self.args.threads, connections)
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
               "--timeout", "10s", "-s", LUA, f"http://127.0.0.1:{port}", "--", tokens, mode,
               str(pause_ms)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        line = next(l for l in out.splitlines() if l.startswith("WRK_JSON "))
        result = json.loads(line[len("WRK_JSON "):])
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        return result

    def row(self, name, port, tokens, mode, expect, pid=None, pause_ms=0, connections=None,
            rss=True):
        """Runs `runs` measured wrk runs (after a warm-up) and keeps the median of each
        figure; errors are summed. `expect` is "ok" (2xx) or "refused" (every answer a 4xx)."""
        a = self.args
        connections = connections or a.connections
        if a.warmup:
            self.wrk(port, tokens, mode, a.warmup, connections, pause_ms)
        runs, cpu, requests = [], 0.0, 0
        for _ in range(a.runs):
            before = cpu_seconds(pid) if pid else 0.0
            r = self.wrk(port, tokens, mode, a.duration, connections, pause_ms)
            if pid:
                cpu += cpu_seconds(pid) - before
            requests += r["requests"]
            runs.append(r)
        socket_errors = sum(r["connect_errors"] + r["read_errors"] + r["write_errors"]
                            + r["timeout_errors"] for r in runs)
        status_errors = sum(r["status_errors"] for r in runs)
        wrong = status_errors if expect == "ok" else requests - status_errors
        med = lambda key: statistics.median(r[key] for r in runs)
        row = {
            "name": name, "requests": requests, "runs": len(runs),
            "rps": med("rps"), "p50_ms": med("p50_us") / 1000, "p99_ms": med("p99_us") / 1000,
            "p999_ms": med("p999_us") / 1000, "errors": socket_errors + wrong,
            "rps_runs": [round(r["rps"]) for r in runs],
        }
        if pid:
            row["cpu_s_per_10k"] = cpu / requests * 10_000 if requests else None
        if pid and rss:
            row["peak_rss_mib"] = proc_status(pid, "VmHWM") / 1024
        log(f"{name}: {row['rps']:.0f} req/s, p99 {row['p99_ms']:.2f} ms, errors {row['errors']}")
        return row

    def build(self):
        """Release binaries, unless --bin-dir names binaries to use."""
        if not self.args.bin_dir:
            log("building release binaries")
            subprocess.run(["cargo", "build", "--release", "--locked", "--workspace", "--bins"],
                           cwd=ROOT, check=True)
            self.bin = os.path.join(ROOT, "target", "release")

    def count(self):
        """The counting mode (count.py): instructions and syscalls per request."""
        a = self.args
        nginx = ensure_tools(not a.no_install, needed=("valgrind", "strace"))
        if not nginx or a.no_nginx:
            sys.exit("the counting mode needs nginx (its proxy row and the vendor stand-in)")
        self.build()
        jwks = self.mint_tokens(a.callers)
        _, stand_in, stand_in_kind = self.start_stand_in(nginx)
        settings = {"requests": a.count_requests, "warmup": a.count_warmup,
                    "repeats": a.count_repeats, "rust_log": os.environ.get("RUST_LOG", "info"),
                    "connections": COUNT_CONNECTIONS, "top": a.count_top,
                    "callers": a.callers, "stand_in": stand_in_kind, "fsync": a.fsync,
                    "binaries": self.bin, "commit": commit()}
        result = count.Counter(self, nginx, stand_in, jwks, settings).run()
        result.update(mode="count", machine=machine(), command=command_line())
        return result

    def run(self):
        a = self.args
        nginx = ensure_tools(not a.no_install)
        if a.no_nginx:
            nginx = None
        if not nginx:
            log("nginx not available: the stand-in is sipgw-vendor-sim, no nginx-proxy row")
        self.build()
        jwks = self.mint_tokens(a.callers)
        if a.memory_only:
            return {"machine": machine(), "memory": self.memory_row(jwks, a.memory_agents)}
        tokens, bad, one = (self.path(n) for n in ("tokens.txt", "bad-tokens.txt", "one-caller.txt"))

        _, stand_in, stand_in_kind = self.start_stand_in(nginx)
        proxy_child, proxy = self.start_nginx_proxy(nginx, stand_in) if nginx else (None, None)
        # Start-up time to ready, a few fresh processes (each with its own audit trail).
        startups = []
        for i in range(a.startups):
            cfg, _, adm = self.sipgw_config(f"startup{i}", stand_in, jwks)
            child, seconds = self.start_sipgw(cfg, adm, f"startup{i}")
            startups.append(seconds * 1000)
            child.stop()
        # Ports are picked just before the process that binds them starts.
        config, port, admin = self.sipgw_config("sipgw", stand_in, jwks)
        gateway, _ = self.start_sipgw(config, admin, "sipgw")
        time.sleep(0.5)
        idle_rss = proc_status(gateway.pid, "VmRSS") / 1024

        rows = [self.row("direct to stand-in", stand_in, tokens, "vendor", "ok")]
        if proxy:
            # Its CPU (master and workers) for comparison; its RSS is per worker, not shown.
            rows.append(self.row("nginx proxy", proxy, tokens, "gateway", "ok",
                                 pid=proxy_child.pid, rss=False))
        rows.append(self.row("sipgw", port, tokens, "gateway", "ok", pid=gateway.pid))
        sipgw_row = rows[-1]
        rows.append(self.row("sipgw 401 (bad tokens)", port, bad, "gateway", "refused",
                             pid=gateway.pid))
        rows.append(self.row("sipgw 401 (a new forgery each time)", port, tokens, "forge",
                             "refused", pid=gateway.pid))
        # A second gateway whose only caller's quota is spent after one change.
        cfg429, port429, admin429 = self.sipgw_config(
            "sipgw-429", stand_in, jwks, per_caller="{ burst = 1, per_secs = 86400 }")
        limited, _ = self.start_sipgw(cfg429, admin429, "sipgw-429")
        self.wrk(port429, one, "gateway", 1, 1)  # spends the quota
        rows.append(self.row("sipgw 429 (quota spent)", port429, one, "gateway", "refused",
                             pid=limited.pid))
        limited.stop()

        # Added latency at half of sipgw's peak: each connection pauses PAUSE_MS between
        # requests (wrk's delay(), a closed loop), and there are as many connections as make
        # about that rate; the pause dwarfs the latency, so both rows get nearly the same.
        half = sipgw_row["rps"] / 2
        pause = PAUSE_MS
        conns = max(1, round(half * pause / 1000))
        fixed = [self.row(f"direct at ~{half:.0f} req/s", stand_in, tokens, "vendor", "ok",
                          pause_ms=pause, connections=conns),
                 self.row(f"sipgw at ~{half:.0f} req/s", port, tokens, "gateway", "ok",
                          pid=gateway.pid, pause_ms=pause, connections=conns)]

        sipgw_peak_rss = proc_status(gateway.pid, "VmHWM") / 1024
        gateway.stop()
        memory = self.memory_row(jwks, a.memory_agents)

        binary = os.path.getsize(os.path.join(self.bin, "sipgw")) / (1024 * 1024)
        return {
            "machine": machine(),
            "command": command_line(),
            "settings": {"threads": a.threads, "connections": a.connections,
                         "duration_s": a.duration, "warmup_s": a.warmup, "runs": a.runs,
                         "callers": a.callers, "stand_in": stand_in_kind, "fsync": a.fsync,
                         "binaries": self.bin},
            "rows": rows,
            "fixed_rate": {"rows": fixed, "connections": conns, "pause_ms": pause,
                           "added_p99_ms": fixed[1]["p99_ms"] - fixed[0]["p99_ms"]},
            "memory": memory,
            "footprint": {"binary_mib": binary, "idle_rss_mib": idle_rss,
                          "peak_rss_mib": sipgw_peak_rss,
                          "startup_ms_median": statistics.median(startups),
                          "startup_ms_runs": [round(s, 1) for s in startups]},
        }


def command_line():
    return " ".join(["python3", "benches/load/run.py", *sys.argv[1:]])


def commit():
    """The checked-out commit (and whether the tree has changes), for the results."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    head = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    return head + (" (with local changes)" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


MEMORY_METRIC = "sipgw_limit_store_entries"


def store_entries(admin_port):
    """The per-key stores' entry counts, from /metrics (`sipgw_limit_store_entries`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    entries = {}
    for line in text.splitlines():
        if line.startswith(MEMORY_METRIC + "{"):
            series, value = line.rsplit(" ", 1)
            store = series.split('store="', 1)[1].split('"', 1)[0]
            entries[store] = int(float(value))
    return entries


def change_many(port, token, first, count, step, results):
    """Changes for agents mem{first}, mem{first+step}, ... on one keep-alive connection;
    appends (answered, unexpected) to `results`. Each agent is new, with its own key."""
    import http.client
    conn, answered, unexpected = None, 0, 0
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    for i in range(first, count, step):
        for attempt in (1, 2):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", f"/v1/agents/mem{i}/sip-phone-password", body=MEMORY_BODY,
                             headers=dict(headers, **{"Idempotency-Key": f"key-{i}"}))
                response = conn.getresponse()
                response.read()
                answered += 1
                if response.status != 422:
                    unexpected += 1
                    if unexpected == 1:
                        log(f"memory row: unexpected {response.status} for mem{i}")
                break
            except (OSError, http.client.HTTPException):
                conn = None
                if attempt == 2:
                    unexpected += 1
    results.append((answered, unexpected))


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass

    def version(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not found"

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem, 1),
            "kernel": platform.release(), "nginx": version(["nginx", "-v"]),
            "wrk": version(["wrk", "--version"]), "rustc": version(["rustc", "--version"]),
            "date": time.strftime("%Y-%m-%d")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", help="use the sipgw binaries here instead of building release ones")
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per row (0: none)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--callers", type=int, default=200)
    p.add_argument("--startups", type=int, default=5, help="fresh starts timed to readiness")
    p.add_argument("--memory-agents", type=int, default=100_000,
                   help="distinct agents (and Idempotency-Keys) of the memory row")
    p.add_argument("--fsync", default="always", choices=["always", "interval", "never"],
                   help="sipgw's audit.fsync (the targets are for always)")
    p.add_argument("--no-nginx", action="store_true", help="stand-in: sipgw-vendor-sim; no proxy row")
    p.add_argument("--no-install", action="store_true", help="never apt-get install nginx or wrk")
    p.add_argument("--memory-only", action="store_true", help="only the memory row")
    p.add_argument("--smoke", action="store_true", help="a few hundred requests per row (CI)")
    p.add_argument("--count", action="store_true",
                   help="instructions and syscalls per request instead of wall-clock figures")
    p.add_argument("--count-requests", type=int, default=2000,
                   help="requests per row of --count (N; syscalls also run 3N)")
    p.add_argument("--count-warmup", type=int, default=400,
                   help="requests per row before --count starts counting")
    p.add_argument("--count-repeats", type=int, default=3,
                   help="strace pairs per row of --count (the median's figures are shown)")
    p.add_argument("--count-top", type=int, default=12, help="top functions per row of --count")
    p.add_argument("--baseline", help="an earlier --count --json file: its figures as 'before'")
    p.add_argument("--json", help="also write the results as JSON here")
    p.add_argument("--write-results", action="store_true",
                   help="rewrite the results file's part this run measured")
    p.add_argument("--results-file", default=RESULTS,
                   help=f"the results file (default {os.path.relpath(RESULTS, ROOT)})")
    p.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    args = p.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.runs = 1, 0, 1
        args.connections, args.threads, args.callers, args.startups = 4, 1, 10, 1
        args.memory_agents = min(args.memory_agents, 500)
        args.count_requests, args.count_warmup, args.count_repeats = 8, 10, 1
    baseline = None
    if args.baseline:
        with open(args.baseline) as f:
            baseline = json.load(f)
    bench = Bench(args)
    try:
        result = bench.count() if args.count else bench.run()
    except BaseException:
        bench.close(failed=True)
        raise
    bench.close()
    if args.count:
        print(results.count_table(result, baseline))
    else:
        print(results.table(result))
        print()
        print(results.targets(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.write_results:
        results.write(args.results_file, result, baseline)


if __name__ == "__main__":
    main()
