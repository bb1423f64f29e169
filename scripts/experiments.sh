#!/usr/bin/env bash
# The socket-programming notes' experiments, rerun on reactor-pool (docs/experiments.md).
#
#   scripts/experiments.sh levels N [ROUNDS]   N sequential client processes, epoll vs epoll-et
#   scripts/experiments.sh syscalls MODEL SECS system calls per connection under connrate (strace)
#   scripts/experiments.sh fd-setsize          select and descriptors >= FD_SETSIZE
#   scripts/experiments.sh fork-zombies SECS   zombies without reaping; none with the fork model
#   scripts/experiments.sh threads N...        thread per connection: memory and switches
#   scripts/experiments.sh blocking-wait SECS  how long a second client waits (blocking model)
#   scripts/experiments.sh half-close [MODEL]  peer close and half-close, what the server sees
#   scripts/experiments.sh time-wait           who keeps TIME_WAIT; why connrate still works
#   scripts/experiments.sh backlog BACKLOG N   a burst beyond the backlog while the server is stopped
#   scripts/experiments.sh daemon [TERM|KILL]  --daemon --supervise: kill the server, then the daemon
#   scripts/experiments.sh quick               all of the above with tiny counts (CI runs this)
#
# Loopback only, every wait bounded. Binaries: $REACTOR_POOL (default
# target/release/reactor-pool; build with `cargo build --release`), and reactor-pool-bench
# next to it. Needs bash, python3, ps, ss (iproute2); nstat and strace are used if present.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${REACTOR_POOL:-target/release/reactor-pool}
if [[ ! -x $BIN || ! -x $(dirname "$BIN")/reactor-pool-bench ]]; then
    echo "experiments: $BIN or reactor-pool-bench next to it is missing; run \`cargo build --release\` (or set REACTOR_POOL)" >&2
    exit 2
fi
TMP=$(mktemp -d)
SERVERS=()
cleanup() {
    local pid
    for pid in "${SERVERS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVERS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT

# start_server NAME ARGS...: runs `serve --listen 127.0.0.1:0 ARGS` in the background and waits
# (at most 10 s) for its `listening on` line. Sets ADDR, PORT and PID; its log is $TMP/NAME.log.
start_server() {
    local name=$1
    shift
    "$BIN" serve --listen 127.0.0.1:0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
    PID=$!
    SERVERS+=("$PID")
    for _ in $(seq 200); do
        if ADDR=$(sed -n 's/^listening on //p' "$TMP/$name.out") && [[ -n $ADDR ]]; then
            PORT=${ADDR##*:}
            return 0
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "experiments: the $name server did not start:" >&2
    cat "$TMP/$name.log" >&2
    exit 1
}

# stop_server PID: SIGTERM, wait (bounded) for the drain.
stop_server() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
}

now() { date +%s.%N; }

# levels N [ROUNDS]: the notes' level- vs edge-triggered timing, their way: N clients one
# after the other, each a new process sending a 12-byte message ("hello world\n") and
# waiting for the echo. Rounds alternate epoll and epoll-et so drifts of the machine hit both.
cmd_levels() {
    local n=${1:?levels N [ROUNDS]} rounds=${2:-3}
    local order
    for round in $(seq "$rounds"); do
        # ABBA: each model goes first in every other round.
        if ((round % 2)); then order="epoll epoll-et"; else order="epoll-et epoll"; fi
        for model in $order; do
            start_server "$model" --model "$model" --log-level warn
            # One untimed client first, so both timings start with the binary in the cache.
            "$BIN" client "$ADDR" --send 'hello world' --timeout 5 >/dev/null
            local t0 t1
            t0=$(now)
            for _ in $(seq "$n"); do
                "$BIN" client "$ADDR" --send 'hello world' --timeout 5 >/dev/null
            done
            t1=$(now)
            stop_server "$PID"
            python3 -c "import sys; n=int(sys.argv[2]); t=float(sys.argv[4])-float(sys.argv[3]); print(f'round {sys.argv[5]}: {sys.argv[1]:8} {n} clients, one process each: {t:.3f} s ({t/n*1e6:.0f} us per client)')" \
                "$model" "$n" "$t0" "$t1" "$round"
        done
    done
}

# syscalls MODEL SECS: one client at a time (connrate --connections 1) for SECS seconds with
# strace counting the server's system calls; prints them per connection.
cmd_syscalls() {
    local model=${1:?syscalls MODEL SECS} secs=${2:-2}
    command -v strace >/dev/null || { echo "experiments: syscalls needs strace" >&2; return 2; }
    start_server "$model" --model "$model" --log-level warn
    strace -c -f -qq -p "$PID" -o "$TMP/strace-c.txt" &
    local tracer=$!
    sleep 0.5
    "$(dirname "$BIN")/reactor-pool-bench" --target "$ADDR" --scenario connrate --connections 1 \
        --duration "$secs" --warmup 0 --no-progress --json >"$TMP/sys.json" 2>/dev/null || true
    sleep 0.2
    kill -INT "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    stop_server "$PID"
    python3 - "$TMP/sys.json" "$TMP/strace-c.txt" "$model" <<'PY'
import json, sys
n = json.load(open(sys.argv[1]))["connections_opened"]
calls = {}
for line in open(sys.argv[2]):
    f = line.split()
    if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[3].isdigit():
        calls[f[-1]] = int(f[3])
total = sum(calls.values())
print(f"{sys.argv[3]}: {n} connections under strace, {total / max(n, 1):.2f} system calls per connection:")
print("    " + ", ".join(f"{k} {v / max(n, 1):.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])))
PY
}

# fd-setsize: select cannot watch descriptors >= FD_SETSIZE (1024). Asked for more
# connections it refuses to start; left at the default limit it closes what it cannot watch.
cmd_fd_setsize() {
    echo "--- serve --model select --max-connections 2000:"
    local status=0
    "$BIN" serve --listen 127.0.0.1:0 --model select --max-connections 2000 >/dev/null 2>"$TMP/refuse.log" || status=$?
    echo "exit $status: $(cat "$TMP/refuse.log")"
    echo "--- 1,100 idle connections against select with the default max_connections (10000):"
    start_server select --model select --log-level warn
    local bench_status=0
    "$(dirname "$BIN")/reactor-pool-bench" --target "$ADDR" --scenario idle --connections 1100 \
        --duration 1 --no-progress >"$TMP/bench.out" 2>&1 || bench_status=$?
    grep -E '^(idle|errors|connections)' "$TMP/bench.out" | sed 's/^/    /'
    echo "    bench exit $bench_status; server warnings: $(grep -c 'FD_SETSIZE' "$TMP/select.log" || true) lines mentioning FD_SETSIZE, e.g.:"
    grep -m1 'FD_SETSIZE' "$TMP/select.log" | sed 's/^/    /' || true
    stop_server "$PID"
}

# zombies PID: children of PID that are zombies now.
zombies() { ps --ppid "$1" -o stat= 2>/dev/null | grep -c '^Z' || true; }

# fork-zombies SECS: first a parent that never reaps (a shell that execs `sleep` after
# starting five children), then the fork model under SECS seconds of connrate.
cmd_fork_zombies() {
    local secs=${1:-3}
    echo "--- a parent that does not reap: five children exit, the parent never calls wait()"
    bash -c 'for i in 1 2 3 4 5; do sleep 0.1 & done; exec sleep 3' &
    local parent=$!
    sleep 1
    echo "    children of $parent: $(ps --ppid "$parent" -o stat= | tr -s ' \n' ' ')-> $(zombies "$parent") zombies"
    kill "$parent" 2>/dev/null || true
    wait "$parent" 2>/dev/null || true
    echo "--- the fork model (SIGCHLD + waitpid(-1, WNOHANG) loop) under $secs s of connrate"
    start_server fork --model fork --log-level warn
    "$(dirname "$BIN")/reactor-pool-bench" --target "$ADDR" --scenario connrate --connections 4 \
        --duration "$secs" --warmup 0 --no-progress --json >"$TMP/fork.json" 2>/dev/null &
    local bench=$!
    local most=0 z
    while kill -0 "$bench" 2>/dev/null; do
        z=$(zombies "$PID")
        ((z > most)) && most=$z
        sleep 0.05
    done
    wait "$bench" || true
    sleep 0.2
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"    {r['connections_opened']} connections, each a child process; errors: {r['errors']['connect']+r['errors']['reset']+r['errors']['timeout']+r['errors']['mismatch']}\")" "$TMP/fork.json"
    echo "    zombies: at most $most at any sample during the run, $(zombies "$PID") after it"
    stop_server "$PID"
}

# threads N...: the thread model against epoll, as connections grow: server RSS per idle
# connection, and context switches and CPU per message with N active pingpong connections.
cmd_threads() {
    (($# > 0)) || set -- 10 100 1000
    local bench
    bench="$(dirname "$BIN")/reactor-pool-bench"
    printf '%-8s %7s %16s %16s %16s\n' model conns "RSS/idle conn" "switches/msg" "CPU/msg"
    for n in "$@"; do
        "$bench" --compare --models thread,epoll --scenarios pingpong,idle --connections "$n" \
            --duration "${THREADS_SECS:-2}" --repeat 1 --no-progress --out "$TMP/threads-$n" >/dev/null 2>&1 || true
        python3 - "$TMP/threads-$n/report.json" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def get(cell, sc, key):
    for s in r["summary"]:
        if s["cell"] == cell and s["scenario"] == sc and s[key]:
            return s[key]["median"]
    return float("nan")
for cell in ("thread", "epoll"):
    print(f"{cell:8} {sys.argv[2]:>7} {get(cell, 'idle', 'rss_per_connection_bytes'):>14.0f} B"
          f" {get(cell, 'pingpong', 'server_switches_per_msg'):>16.3f}"
          f" {get(cell, 'pingpong', 'server_cpu_per_msg_us'):>13.2f} us")
PY
    done
}

# blocking-wait SECS: the blocking model serves one connection at a time. A first client
# connects and holds for SECS; a second one connects meanwhile and times its echo.
cmd_blocking_wait() {
    local hold=${1:-2}
    start_server blocking --model blocking --log-level warn
    python3 - "$PORT" "$hold" <<'PY'
import socket, sys, threading, time
port, hold = int(sys.argv[1]), float(sys.argv[2])
def echo(s, msg):
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("server closed early")
        got += chunk
    assert got == msg
first = socket.create_connection(("127.0.0.1", port), timeout=30)
echo(first, b"first\n")
def release():
    time.sleep(hold)
    first.close()
threading.Thread(target=release).start()
t0 = time.monotonic()
second = socket.create_connection(("127.0.0.1", port), timeout=30)
t1 = time.monotonic()
echo(second, b"second\n")
t2 = time.monotonic()
print(f"first client holds the server for {hold:.1f} s")
print(f"second client: connect took {(t1-t0)*1e3:.1f} ms (queued in the backlog), "
      f"its echo came {t2-t0:.3f} s after it connected")
second.close()
PY
    stop_server "$PID"
}

# half-close: a client sends 1 MiB, shuts down its write side (FIN) and still reads the whole
# echo; another sends and closes at once. The server's debug log says how each ended; with
# strace, the epoll_wait events (EPOLLRDHUP) and the read() == 0 are shown too.
cmd_half_close() {
    local model=${1:-epoll-et}
    start_server half --model "$model" --log-level debug
    local tracer=""
    if command -v strace >/dev/null; then
        strace -f -qq -e trace=epoll_wait,read,recvfrom,shutdown,close -e signal=none -p "$PID" -o "$TMP/strace.txt" &
        tracer=$!
        sleep 0.5
    fi
    python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
data = bytes(i % 251 for i in range(1 << 20))
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)               # half-close: FIN, but keep reading
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
print(f"half-close: sent {len(data)} B then FIN; read back {len(got)} B, "
      f"{'identical' if bytes(got) == data else 'DIFFERENT'}, then the server's FIN")
s.close()
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"bye\n")
s.close()                                # full close right after sending
print("full close: sent 4 B and closed without reading")
PY
    sleep 0.5
    if [[ -n $tracer ]]; then
        kill "$tracer" 2>/dev/null || true
        wait "$tracer" 2>/dev/null || true
        echo "server syscalls (strace), the end of each connection:"
        grep -E 'EPOLLRDHUP|EPOLLHUP|EPOLLERR|(read|recvfrom)\([0-9]+, "", |shutdown\(|close\(' "$TMP/strace.txt" \
            | cut -c1-150 | sed 's/^[0-9]* /    /' || true
    fi
    echo "server log:"
    grep 'connection closed' "$TMP/half.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    /'
    stop_server "$PID"
}

# time_wait_count FILTER: sockets in TIME_WAIT matching an ss filter.
time_wait_count() { ss -tanH state time-wait "$@" | wc -l; }

# time-wait: TIME_WAIT stays with whoever closes first.
cmd_time_wait() {
    start_server tw --model epoll --idle-timeout 1 --log-level warn
    echo "--- client closes first (reactor-pool client: echo, then close):"
    "$BIN" client "$ADDR" --send hello >/dev/null
    ss -tanH state time-wait "( sport = :$PORT or dport = :$PORT )" | sed 's/^/    /'
    echo "    TIME_WAIT on the server's port: $(time_wait_count "( sport = :$PORT )"), on the client's side: $(time_wait_count "( dport = :$PORT )")"
    echo "--- server closes first (its 1 s idle timeout), then the client:"
    python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
assert s.recv(1) == b""      # blocks until the server's idle timeout closes it
s.close()
PY
    ss -tanH state time-wait "( sport = :$PORT )" | sed 's/^/    /'
    echo "    TIME_WAIT on the server's port: $(time_wait_count "( sport = :$PORT )")"
    echo "--- connrate, 4 clients for ${TW_SECS:-2} s (the load generator closes first):"
    "$(dirname "$BIN")/reactor-pool-bench" --target "$ADDR" --scenario connrate --connections 4 \
        --source-addrs 1 --duration "${TW_SECS:-2}" --warmup 0 --no-progress --json >"$TMP/tw.json" 2>/dev/null || true
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); e=r['errors']; print(f\"    {r['connections_opened']} connections, connect errors {e['connect']}\")" "$TMP/tw.json"
    echo "    TIME_WAIT now: $(time_wait_count "( dport = :$PORT )") on the client side, $(time_wait_count "( sport = :$PORT )") on the server's port"
    echo "    net.ipv4.tcp_tw_reuse = $(cat /proc/sys/net/ipv4/tcp_tw_reuse), ephemeral ports: $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range)"
    stop_server "$PID"
}

# backlog BACKLOG N: the server listens with --backlog BACKLOG and is stopped (SIGSTOP, so
# nothing accepts); N clients connect at once; 0.3 s later the server continues. Connects
# that found room in the accept queue finished at once; the others' SYNs were dropped and
# retransmitted after 1 s.
cmd_backlog() {
    local backlog=${1:-4} n=${2:-20}
    start_server backlog --model epoll --backlog "$backlog" --log-level warn
    local before=""
    command -v nstat >/dev/null && before=$(nstat -az TcpExtListenOverflows TcpExtListenDrops 2>/dev/null | awk 'NR>1 && $1 ~ /^TcpExt/ {printf "%s=%s ", $1, $2}')
    kill -STOP "$PID"
    (sleep 0.3; kill -CONT "$PID") &
    python3 - "$PORT" "$n" "$backlog" <<'PY'
import selectors, socket, sys, time
port, n, backlog = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sel = selectors.DefaultSelector()
t0 = time.monotonic()
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    sel.register(s, selectors.EVENT_WRITE, i)
done = {}
socks = []
while len(done) < n and time.monotonic() - t0 < 15:
    for key, _ in sel.select(timeout=0.5):
        err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        done[key.data] = (time.monotonic() - t0, err)
        sel.unregister(key.fileobj)
        socks.append(key.fileobj)
times = sorted(t for t, err in done.values() if err == 0)
buckets = {}
for t in times:
    b = "< 0.2 s" if t < 0.2 else "0.2-0.9 s" if t < 0.9 else "0.9-1.5 s" if t < 1.5 else "1.5-3.5 s" if t < 3.5 else ">= 3.5 s"
    buckets[b] = buckets.get(b, 0) + 1
print(f"backlog {backlog}, server stopped for 0.3 s, {n} connects at once:")
for b in ("< 0.2 s", "0.2-0.9 s", "0.9-1.5 s", "1.5-3.5 s", ">= 3.5 s"):
    if b in buckets:
        print(f"    {buckets[b]:3} connected after {b}")
print(f"    not connected after 15 s: {n - len(times)}")
print("    connect times (s): " + " ".join(f"{t:.3f}" for t in times))
PY
    if [[ -n $before ]]; then
        echo "    nstat before: $before"
        echo "    nstat after:  $(nstat -az TcpExtListenOverflows TcpExtListenDrops 2>/dev/null | awk 'NR>1 && $1 ~ /^TcpExt/ {printf "%s=%s ", $1, $2}')"
    fi
    stop_server "$PID"
}

# daemon: the notes' supervisor demonstration against --daemon --supervise.
cmd_daemon() {
    local pidfile=$TMP/rp.pid log=$TMP/rp.log
    "$BIN" serve --daemon --supervise --listen 127.0.0.1:0 --pid-file "$pidfile" --log-file "$log" >"$TMP/daemon.out"
    local addr sup child
    addr=$(sed -n 's/^listening on //p' "$TMP/daemon.out")
    sup=$(cat "$pidfile")
    SERVERS+=("$sup")
    child=$(pgrep -P "$sup")
    echo "daemon started: listening on $addr; supervisor $sup (pid file), server $child"
    echo "    ps: $(ps -o pid=,ppid=,comm= -p "$sup","$child" | tr -s ' ' | tr '\n' ';')"
    "$BIN" client "$addr" --send 'before' >/dev/null && echo "    echo works"
    echo "--- kill -KILL $child (the server):"
    local t0 new=""
    t0=$(now)
    kill -KILL "$child"
    for _ in $(seq 200); do
        new=$(pgrep -P "$sup" || true)
        [[ -n $new && $new != "$child" ]] && break
        sleep 0.05
    done
    local t1
    t1=$(now)
    "$BIN" client "$addr" --send 'after' --timeout 10 >/dev/null && echo "    echo works again"
    python3 -c "import sys; print(f'    restarted as {sys.argv[1]} after {float(sys.argv[3])-float(sys.argv[2]):.2f} s; supervisor still {sys.argv[4]}')" "$new" "$t0" "$t1" "$sup"
    grep -m2 -iE 'exit|restart|signal' "$log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    log: /' || true
    local sig=${1:-TERM}
    echo "--- kill -$sig $sup (the daemon itself):"
    kill "-$sig" "$sup"
    for _ in $(seq 200); do
        kill -0 "$new" 2>/dev/null || kill -0 "$sup" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$new" 2>/dev/null || kill -0 "$sup" 2>/dev/null; then
        echo "    still running: $(ps -o pid=,comm= -p "$sup","$new" | tr '\n' ' ')"
        return 1
    fi
    echo "    supervisor and server $new both gone; pid file $([[ -e $pidfile ]] && echo left behind || echo removed); port closed: $("$BIN" client "$addr" --send x --timeout 1 >/dev/null 2>&1 && echo no || echo yes)"
    grep -iE 'stop|drain|exit' "$log" | tail -2 | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    log: /' || true
}

cmd_quick() {
    local bench
    bench="$(dirname "$BIN")/reactor-pool-bench"
    echo "=== levels";        cmd_levels 10 1
    echo "=== levels, connrate"
    "$bench" --compare --models epoll,epoll-et --scenarios connrate --connections 1 \
        --duration 0.3 --warmup 0.1 --repeat 1 --no-progress --out "$TMP/levels" | grep -E '^\| epoll'
    if command -v strace >/dev/null; then
        echo "=== syscalls";  cmd_syscalls epoll 0.3; cmd_syscalls epoll-et 0.3
    fi
    echo "=== fd-setsize";    cmd_fd_setsize
    echo "=== fork-zombies";  cmd_fork_zombies 1
    echo "=== threads";       THREADS_SECS=0.3 cmd_threads 10
    echo "=== blocking-wait"; cmd_blocking_wait 0.5
    echo "=== half-close";    cmd_half_close
    echo "=== time-wait";     TW_SECS=0.5 cmd_time_wait
    echo "=== backlog";       cmd_backlog 4 12
    echo "=== daemon";        cmd_daemon TERM
    echo "=== daemon, KILL";  cmd_daemon KILL
    # Any failure above ended the script (set -e); reaching here means every one ran.
    echo "experiments: $(grep -c '^    echo "=== ' "$0") passed, 0 failed"
}

case ${1:-} in
    levels) shift; cmd_levels "$@" ;;
    syscalls) shift; cmd_syscalls "$@" ;;
    fd-setsize) cmd_fd_setsize ;;
    fork-zombies) shift; cmd_fork_zombies "$@" ;;
    threads) shift; cmd_threads "$@" ;;
    blocking-wait) shift; cmd_blocking_wait "$@" ;;
    half-close) shift; cmd_half_close "$@" ;;
    time-wait) cmd_time_wait ;;
    backlog) shift; cmd_backlog "$@" ;;
    daemon) shift; cmd_daemon "$@" ;;
    quick) cmd_quick ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
