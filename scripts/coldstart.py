#!/usr/bin/env python3
"""Cold start: time from exec to the function's first call to the Lambda runtime API's `next`
endpoint, against a local stand-in of that API, for each binary given, interleaved, N runs each.
Prints medians and each binary's ratio to each of the first B binaries (the baselines).
Usage: coldstart.py [-n N] [-b B] <baseline binary>... <binary>..."""
import argparse, os, statistics, subprocess, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("-n", type=int, default=30)
ap.add_argument("-b", type=int, default=1, help="how many of the first binaries are baselines")
ap.add_argument("bins", nargs="+")
args = ap.parse_args()

first_next = threading.Event()
seen_at = [0.0]

class RuntimeApi(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            seen_at[0] = time.perf_counter()
            first_next.set()
            time.sleep(5)  # hold the long poll; the process is killed meanwhile
        self.send_response(500); self.end_headers()
    def do_POST(self):
        self.send_response(202); self.end_headers()
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()
# The environment Lambda gives a provided.al2023 function, not this shell's: a developer machine
# often sets SSL_CERT_FILE, AWS_CA_BUNDLE and the like, which change what the binaries load.
env = dict(PATH="/usr/local/bin:/usr/bin:/bin", LANG="en_US.UTF-8", TZ=":UTC",
           LAMBDA_TASK_ROOT="/var/task", LAMBDA_RUNTIME_DIR="/var/runtime", _HANDLER="bootstrap",
           AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
           AWS_LAMBDA_FUNCTION_NAME="coldstart", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
           AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/coldstart",
           AWS_LAMBDA_LOG_STREAM_NAME="stream", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test",
           AWS_SECRET_ACCESS_KEY="test", AWS_SESSION_TOKEN="test", TABLE_NAME="t", QUEUE_URL="http://127.0.0.1:1/123456789012/q",
           ADMIN_USER_SECRET="u", ADMIN_ORG_SECRET="o", RUST_LOG="warn")
times = {b: [] for b in args.bins}
for _ in range(args.n):
    for b in args.bins:
        first_next.clear()
        t0 = time.perf_counter()
        p = subprocess.Popen([b], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not first_next.wait(10):
            p.kill(); raise SystemExit(f"{b} never called next")
        times[b].append((seen_at[0] - t0) * 1000)
        p.kill(); p.wait()
bases = [(os.path.basename(b), statistics.median(times[b])) for b in args.bins[:args.b]]
for b in args.bins:
    m = statistics.median(times[b])
    ratios = "  ".join(f"{m / base:.2f}x {name}" for name, base in bases)
    print(f"{os.path.basename(b):<28} median {m:7.2f} ms  p90 {sorted(times[b])[int(len(times[b]) * 0.9) - 1]:7.2f} ms  {ratios}")
