"""The counting mode of the load benchmark (`run.py --count`): instructions and syscalls
per request, for sipgw's success path, its refusal paths and nginx as a plain proxy.

Wall-clock figures on a shared machine move with whatever else runs; these do not:
  instructions  the process runs under `valgrind --tool=callgrind`; after a warm-up its
                counters are zeroed (`callgrind_control -z`), N requests are sent and the
                counters dumped (`callgrind_control -d`); the dump's total over the requests
                answered is the user-space instructions per request, all threads included
  syscalls      the process runs under `strace -f -c` twice, once for N and once for 3N
                requests after the same warm-up; (calls of the long run - calls of the short
                run) / (requests of the long run - requests of the short run), so that
                start-up, warm-up and shutdown cancel out
  functions     the top inclusive functions of each callgrind dump, per request

nginx runs as one process (`master_process off`): the master of a normal nginx does no
per-request work, so its single process does exactly a worker's work. Requests come from
this module's own client (keep-alive connections, an exact number of requests, every
status checked), not from wrk, which runs for a time rather than a number of requests.
"""

import glob
import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# sipgw's API requests by outcome; their sum over a window is the number answered.
REQUESTS_METRIC = "sipgw_requests_total{"
GATEWAY_BODY = '{"accountPwd":"Welcome~2024","newPhonePwd":"Sip~Phone2025"}'
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Valgrind runs a program some 50 times slower; start-up and a request take that much longer.
VALGRIND_READY_SECS = 300
REQUEST_TIMEOUT_SECS = 120
# A function costing at least this share of the one above it in the top list is taken for
# a wrapper chain with it, and left out.
WRAPPER_SHARE = 0.99
# Frames that enclose a thread's or a task's whole work without doing any of it: left out
# of the top functions, which would otherwise be a list of 100 % wrappers.
PLUMBING = re.compile(
    r"^(\(below main\)|main|start_thread|clone3?|_start|__libc_start_\w+|0x[0-9a-f]+"
    r"|std::(rt|panic|panicking|sys|thread)::.*|__rust_(try|begin_short_backtrace)"
    r"|core::ops::function::.*|.*::call_once.*|tokio::runtime::(task|context|scheduler"
    r"|blocking|park|coop)::.*|tokio::runtime::runtime::Runtime::block_on.*"
    r"|ngx_(single|worker)_process_cycle|ngx_process_events_and_timers)$")


def log(message):
    print(f"[count] {message}", file=sys.stderr, flush=True)


class Row:
    """One counted row: how to start the process it measures and what to send it."""

    def __init__(self, name, target, tokens, mode, expect, spend_quota=False):
        #: The row's name in the tables (the wall-clock rows' names where they match).
        self.name = name
        #: "nginx", "sipgw" or "sipgw-429": which process (and configuration) it needs.
        self.target = target
        #: The "agent token" file the requests are made from.
        self.tokens = tokens
        #: "gateway" (the tokens as they are) or "forge" (a new signature every request).
        self.mode = mode
        #: The HTTP status every answer must have.
        self.expect = expect
        #: Send one change first, so that the only caller's quota is spent.
        self.spend_quota = spend_quota


def rows(bench):
    """The counted rows; the token files are those `Bench.mint_tokens` wrote."""
    tokens, bad = bench.path("tokens.txt"), bench.path("bad-tokens.txt")
    other, one = bench.path("other-agent.txt"), bench.path("one-caller.txt")
    return [Row("nginx proxy", "nginx", tokens, "gateway", 200),
            Row("sipgw", "sipgw", tokens, "gateway", 200),
            Row("sipgw 401 (bad tokens)", "sipgw", bad, "gateway", 401),
            Row("sipgw 401 (a new forgery each time)", "sipgw", tokens, "forge", 401),
            Row("sipgw 403 (another caller's agent)", "sipgw", other, "gateway", 403),
            Row("sipgw 429 (quota spent)", "sipgw-429", one, "gateway", 429, spend_quota=True)]


# --- the client ----------------------------------------------------------------------------

class Client:
    """Keep-alive connections to one port, opened in the warm-up and kept for the counted
    window. A connection the server closes after an answer (sipgw does when it answers
    before reading the body: every refusal) is opened again by the next request on it, and
    the window counts that as part of the request's cost, as a real client would pay it."""

    def __init__(self, port, tokens_file, mode, connections):
        self.port = port
        self.mode = mode
        with open(tokens_file) as f:
            self.pairs = [line.split() for line in f if line.strip()]
        self.conns = [None] * connections
        self.sent = 0
        # Forgeries never repeat one sipgw has seen (that one would come from its cache).
        self.forged = random.randrange(2 ** 40)
        self.lock = threading.Lock()

    def send(self, count, expect):
        """Sends `count` requests, spread over the connections; returns (answered, wrong):
        answers received, and answers without status `expect` or requests that failed."""
        first = self.sent
        self.sent += count
        indexes = iter(range(first, first + count))
        results = []
        threads = [threading.Thread(target=self._worker, args=(k, indexes, expect, results))
                   for k in range(len(self.conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(r[0] for r in results), sum(r[1] for r in results)

    def _worker(self, k, indexes, expect, results):
        answered = wrong = 0
        while True:
            with self.lock:
                i = next(indexes, None)
            if i is None:
                break
            status = self._one(k, i)
            answered += status is not None
            wrong += status != expect
        results.append((answered, wrong))

    def _one(self, k, i):
        """One request on connection k (reconnecting once if the server closed it)."""
        agent, token = self.pairs[i % len(self.pairs)]
        if self.mode == "forge":
            token = self._forge(token)
        headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        for attempt in (1, 2):
            try:
                if self.conns[k] is None:
                    self.conns[k] = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_SECS)
                self.conns[k].request("POST", f"/v1/agents/{agent}/sip-phone-password",
                                      body=GATEWAY_BODY, headers=headers)
                response = self.conns[k].getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.conns[k] = None
                if attempt == 2:
                    return None

    def _forge(self, token):
        """`token` with its signature's first 8 characters replaced by a counter."""
        with self.lock:
            self.forged += 1
            n = self.forged
        prefix = "".join(B64URL[(n >> (6 * d)) % 64] for d in range(8))
        head, signature = token.rsplit(".", 1)
        return f"{head}.{prefix}{signature[8:]}"

    def close(self):
        for conn in self.conns:
            if conn is not None:
                conn.close()


def requests_served(admin_port):
    """The sum of `sipgw_requests_total` over every code: API requests answered so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith(REQUESTS_METRIC))


# --- callgrind and strace output -----------------------------------------------------------

def dump_total(path):
    """The instruction total of a callgrind dump (its `totals:` or `summary:` line)."""
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no total in the callgrind dump {path}")


def top_functions(path, requests, count):
    """The `count` costliest functions of a dump, inclusive, per request: plumbing frames
    left out, names shortened, one entry per shortened name (its largest instance)."""
    annotate = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                               "--auto=no", path], check=True, capture_output=True, text=True)
    best = {}
    for line in annotate.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)(?:\s+\[[^\]]*\])?\s*$", line)
        if not m or m.group(2) == "PROGRAM TOTALS":
            continue
        name = shorten(m.group(2).split(":", 1)[-1])
        if PLUMBING.match(name):
            continue
        best[name] = max(best.get(name, 0), int(m.group(1).replace(",", "")))
    total = dump_total(path)
    top, above = [], None
    for name, cost in sorted(best.items(), key=lambda item: -item[1]):
        # Within 1 % of the line above: a wrapper chain (A calls B and little else); the
        # outermost name, which says where the work comes from, stands for it.
        if above is None or cost < above * WRAPPER_SHARE:
            top.append((name, cost))
        above = cost
    return [{"name": name, "per_request": cost / requests, "percent": 100 * cost / total}
            for name, cost in top[:count]]


def shorten(name):
    """A demangled name made readable: no hash or symbol version, no generic arguments,
    paths inside `<A as Trait>` and `<impl Trait for A>` cut to crate::Name, aws-lc's
    versioned prefix as a path."""
    name = re.sub(r"::h[0-9a-f]{16}\b|@@?[\w.]+$", "", name)
    previous = None
    while previous != name:  # innermost generic arguments first
        previous = name
        name = re.sub(r"(?<=[\w>])<[^<>]*>", "", name)
    # `<std::thread::Thread>::new`, an inherent impl, reads as a path.
    name = re.sub(r"^<([\w:]+)>::", r"\1::", name)
    name = re.sub(r"<[^<>]*>", lambda m: re.sub(r"\b(\w+)::(?:\w+::)*(\w+)\b", r"\1::\2",
                                                 m.group(0)), name)
    return re.sub(r"^aws_lc_\d+_\d+_\d+_", "aws_lc::", name)


def strace_calls(path):
    """{syscall: calls} from an `strace -c` summary."""
    calls = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(fields) in (5, 6) and fields[-1] != "total" and fields[3].isdigit():
                calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


# --- the counting ----------------------------------------------------------------------------

class Counter:
    """Runs every row under callgrind, then under strace, against one vendor stand-in."""

    def __init__(self, bench, nginx, stand_in, jwks, settings):
        self.bench = bench
        self.nginx = nginx
        self.stand_in = stand_in
        self.jwks = jwks
        #: requests (N), warmup, repeats, connections, top: see `run.py --help`.
        self.settings = settings
        self.rows = rows(bench)

    def run(self):
        """{"settings", "rows"}: each row with instructions, syscalls and top functions per
        request, and its ratios to the nginx row."""
        instructions = self.count_instructions()
        syscalls = {row.name: self.count_syscalls(row) for row in self.rows}
        out = []
        for row in self.rows:
            out.append(dict(name=row.name, expect=row.expect, **instructions[row.name],
                            **syscalls[row.name]))
        nginx = out[0]
        for r in out:
            r["x_nginx_instructions"] = r["instructions_per_request"] / nginx["instructions_per_request"]
            r["x_nginx_syscalls"] = r["syscalls_per_request"] / nginx["syscalls_per_request"]
        return {"settings": dict(self.settings), "rows": out}

    # --- instructions --------------------------------------------------------------------

    def count_instructions(self):
        """One process per target under callgrind; one zeroed and dumped window per row."""
        found = {}
        for target in ("nginx", "sipgw", "sipgw-429"):
            name = f"callgrind-{target}"
            out = self.bench.path(name + ".out")
            valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            child, port, admin, pid = self.start(target, valgrind, name)
            for row in (r for r in self.rows if r.target == target):
                found[row.name] = self.window(row, port, admin, pid, out)
            child.stop(timeout=120)
        return found

    def window(self, row, port, admin, pid, out):
        """One row's counted window in a running process: warm-up, counters zeroed, N
        requests, counters dumped; the row's instruction figures."""
        s = self.settings
        client = Client(port, row.tokens, row.mode, s["connections"])
        try:
            self.prepare(client, row)
            before = requests_served(admin) if admin else 0
            callgrind_control("-z", pid)
            answered, wrong = client.send(s["requests"], row.expect)
            dump = self.dump(pid, out)
            # Read after the dump: the /metrics request is not in the window.
            served = requests_served(admin) - before if admin else answered
        finally:
            client.close()
        check(row, answered, wrong, s["requests"])
        total = dump_total(dump)
        log(f"{row.name}: {served} requests, {total / served / 1000:.1f} k instructions each")
        return {"requests": served, "instructions": total,
                "instructions_per_request": total / served,
                "top_functions": top_functions(dump, served, s["top"])}

    def prepare(self, client, row):
        """Spends the quota (the 429 row), then warms up: every token seen at least once,
        the vendor's AccessToken fetched, the connections open."""
        if row.spend_quota:
            answered, wrong = client.send(1, 200)
            check(row, answered, wrong, 1, "spending the quota")
        answered, wrong = client.send(self.settings["warmup"], row.expect)
        check(row, answered, wrong, self.settings["warmup"], "warm-up")

    def dump(self, pid, out):
        """Dumps the counters; returns the new dump once it is written in full."""
        known = set(glob.glob(out + "*"))
        callgrind_control("-d", pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for path in set(glob.glob(out + "*")) - known:
                with open(path, errors="replace") as f:
                    if "\ntotals:" in f.read():
                        return path
            time.sleep(0.1)
        raise RuntimeError(f"callgrind wrote no dump beside {out}")

    # --- syscalls ------------------------------------------------------------------------

    def count_syscalls(self, row):
        """`repeats` pairs of processes under `strace -f -c`, N and 3N requests after the
        same warm-up; the pair with the median total stands for the row. Wake-ups (futex,
        sched_yield, epoll_wait) and the audit writer's batches follow the timing, so
        pairs differ where instruction counts do not."""
        n = self.settings["requests"]
        pairs = []
        for repeat in range(self.settings["repeats"]):
            short, long_ = (self.strace_run(row, count, repeat) for count in (n, 3 * n))
            requests = long_["served"] - short["served"]
            per = {name: (long_["calls"].get(name, 0) - short["calls"].get(name, 0)) / requests
                   for name in set(short["calls"]) | set(long_["calls"])}
            pairs.append((sum(per.values()), per, [short["served"], long_["served"]]))
        pairs.sort(key=lambda pair: pair[0])
        total, per, served = pairs[len(pairs) // 2]
        top = sorted(((k, v) for k, v in per.items() if v > 0), key=lambda kv: -kv[1])
        log(f"{row.name}: {total:.2f} syscalls per request "
            f"(pairs: {', '.join(f'{p[0]:.2f}' for p in pairs)})")
        return {"syscalls_per_request": total,
                "syscalls_per_request_pairs": [p[0] for p in pairs],
                "top_syscalls": [{"name": k, "per_request": v} for k, v in top[:8]],
                "strace_requests": served}

    def strace_run(self, row, count, repeat):
        """One process under `strace -f -c`: started, warmed up, sent `count` requests and
        stopped; {"served": API requests answered in all, "calls": {syscall: calls}}."""
        slug = re.sub(r"\W+", "-", row.name).strip("-")
        name = f"strace-{slug}-{count}-{repeat}"
        summary = self.bench.path(name + ".txt")
        child, port, admin, _ = self.start(row.target, ["strace", "-f", "-c", "-o", summary],
                                           name)
        client = Client(port, row.tokens, row.mode, self.settings["connections"])
        try:
            self.prepare(client, row)
            answered, wrong = client.send(count, row.expect)
            served = requests_served(admin) if admin else client.sent
        finally:
            client.close()
        check(row, answered, wrong, count)
        stop_traced(child)
        return {"served": served, "calls": strace_calls(summary)}

    # --- processes -----------------------------------------------------------------------

    def start(self, target, wrapper, name):
        """Starts `target` under `wrapper`; returns (child, port, admin port or None, the pid
        callgrind_control addresses). Waits until it answers."""
        b = self.bench
        if target == "nginx":
            port = free_port()
            conf = b.nginx_conf(name, b.proxy_block(self.stand_in, port), workers=1,
                                master=False)
            child = b.spawn([*wrapper, self.nginx, "-p", b.dir, "-c", conf], name)
            wait_listening(port, child, name)
            return child, port, None, child.pid
        quota = {"per_caller": "{ burst = 1, per_secs = 86400 }"} if target == "sipgw-429" else {}
        config, port, admin = b.sipgw_config(name, self.stand_in, self.jwks, **quota)
        child, _ = b.start_sipgw(config, admin, name, wrapper=wrapper,
                                 ready_secs=VALGRIND_READY_SECS)
        return child, port, admin, child.pid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, child, name):
    deadline = time.monotonic() + VALGRIND_READY_SECS
    while time.monotonic() < deadline and child.proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}; see {child.log.name}")


def callgrind_control(option, pid):
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def check(row, answered, wrong, sent, what="counted window"):
    if wrong or answered != sent:
        raise RuntimeError(f"{row.name} ({what}): {answered} of {sent} answered, "
                           f"{wrong} without status {row.expect} or failed")


def stop_traced(child):
    """Stops the process strace runs (strace, stopped itself, would detach and leave it
    running); strace then writes its summary and exits."""
    with open(f"/proc/{child.pid}/task/{child.pid}/children") as f:
        traced = [int(p) for p in f.read().split()]
    for pid in traced:
        os.kill(pid, signal.SIGTERM)
    child.proc.wait(60)
    child.stop()
