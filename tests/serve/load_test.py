"""Bounded load test of crossbatch_server on loopback (tiny random after/before models).

N requests (default 2000) from C concurrent clients (default 32), each a few new tokens, mixed
/v1/completions (plain, sampled or greedy) and /generate_lda (LDA), every request with its own
seed. Checks: zero errors, and every completion equal to the same request sent alone, one at a
time, to a server run with --max-batch 1 (batch invariance under load). Measures requests/s and
tokens/s of the batched server (--max-batch B) and of the one-request-at-a-time server under the
same concurrent load, and prints both with their ratio (JSON with --json FILE).
  python3 tests/serve/load_test.py build/cpu/examples/serve/crossbatch_server [--requests 2000]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import Server  # noqa: E402
from tiny_server_model import write_tiny_model  # noqa: E402

WORDS = "the a cat dog runs jumps over under quick brown lazy river mountain song code data".split()


def make_requests(n, tokens, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        temperature = rng.choice([0.0, 0.7, 1.0, 1.3])
        if i % 2 == 0:
            out.append(("/v1/completions", {
                "prompt": prompt, "max_tokens": tokens, "temperature": temperature,
                "top_p": rng.choice([1.0, 0.9]), "seed": rng.randrange(2**32),
                "ignore_eos": rng.random() < 0.5}))
        else:
            out.append(("/generate_lda", {
                "prompt": prompt, "max_new_tokens": tokens, "alpha": rng.choice([0.5, 1.0, 2.0]),
                "temperature": max(temperature, 0.5), "seed": rng.randrange(2**32),
                "apply_chat_template": rng.random() < 0.5}))
    return out


def completion_of(path, body):
    if path == "/v1/completions":
        return body["choices"][0]["text"], body["usage"]["completion_tokens"]
    return body["completion_ids"], body["tokens_generated"]


def run_load(url, requests, clients):
    """Sends every request from `clients` threads (keep-alive connections); returns results,
    errors, seconds and generated tokens."""
    netloc = urllib.parse.urlparse(url).netloc
    results = [None] * len(requests)
    errors = []
    next_index = [0]
    lock = threading.Lock()
    done = [0]

    def client():
        conn = http.client.HTTPConnection(netloc, timeout=60)
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(requests):
                break
            path, body = requests[i]
            try:
                conn.request("POST", path, json.dumps(body).encode(),  # bytes: one packet with the headers
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    errors.append((i, resp.status, data[:200]))
                    continue
                results[i] = completion_of(path, json.loads(data))
            except (OSError, http.client.HTTPException) as e:
                errors.append((i, "exception", repr(e)))
                conn.close()
                conn = http.client.HTTPConnection(netloc, timeout=60)
            with lock:
                done[0] += 1
        conn.close()

    t0 = time.time()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    last = 0.0
    while any(t.is_alive() for t in threads):
        time.sleep(0.1)
        el = time.time() - t0
        if el - last < 2 and any(t.is_alive() for t in threads):
            continue
        last = el
        rate = done[0] / max(el, 1e-9)
        eta = (len(requests) - done[0]) / max(rate, 1e-9)
        print(f"\r  {done[0]}/{len(requests)} requests, {rate:.0f} req/s, ETA {eta:.0f} s",
              end="", file=sys.stderr)
    print(file=sys.stderr)
    for t in threads:
        t.join()
    seconds = time.time() - t0
    tokens = sum(r[1] for r in results if r)
    return results, errors, seconds, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=4)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1, help="server CPU threads")
    ap.add_argument("--json", help="write the measurements here")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="crossbatch_load_")
    try:
        after, before = os.path.join(tmp, "after"), os.path.join(tmp, "before")
        write_tiny_model(after, 1, max_positions=256, layers=a.layers, hidden=a.hidden,
                         intermediate=a.intermediate)
        write_tiny_model(before, 2, max_positions=256, layers=a.layers, hidden=a.hidden,
                         intermediate=a.intermediate)
        requests = make_requests(a.requests, a.tokens, 1234)
        common = ["--before-model", before, "--max-queue", a.requests, "--max-new-tokens", 64,
                  "--max-prompt-tokens", 128, "--threads", a.threads]
        measured = {}
        outputs = {}
        for name, batch in (("batched", a.max_batch), ("one_at_a_time", 1)):
            server = Server(os.path.abspath(a.server), after, "--max-batch", batch, *common)
            try:
                print(f"{name} (--max-batch {batch}): {a.requests} requests from {a.clients} "
                      f"clients", file=sys.stderr)
                res, errors, secs, toks = run_load(server.url, requests, a.clients)
                outputs[name] = (res, errors)
                measured[name] = {"max_batch": batch, "seconds": secs, "requests": a.requests,
                                  "errors": len(errors), "tokens": toks,
                                  "requests_per_s": a.requests / secs, "tokens_per_s": toks / secs}
                if name == "one_at_a_time":
                    # The reference: every request alone (one client, one at a time).
                    print("alone: every request sent by itself", file=sys.stderr)
                    alone, alone_errors, _, _ = run_load(server.url, requests, 1)
                    outputs["alone"] = (alone, alone_errors)
            finally:
                server.stop()
        failures = 0
        for name in ("batched", "one_at_a_time", "alone"):
            res, errors = outputs[name]
            for e in errors[:5]:
                print(f"{name}: request {e[0]} failed: {e[1:]}", file=sys.stderr)
            failures += len(errors)
        alone = outputs["alone"][0]
        for name in ("batched", "one_at_a_time"):
            res = outputs[name][0]
            diff = [i for i in range(a.requests) if res[i] is not None and alone[i] is not None
                    and res[i][0] != alone[i][0]]
            for i in diff[:5]:
                print(f"{name}: request {i} {requests[i]} gave {res[i][0]!r}, alone "
                      f"{alone[i][0]!r}", file=sys.stderr)
            measured[name]["mismatches_vs_alone"] = len(diff)
            failures += len(diff)
        b, o = measured["batched"], measured["one_at_a_time"]
        print(f"{'server':<16}{'max_batch':>10}{'req/s':>10}{'tokens/s':>10}{'errors':>8}"
              f"{'mismatch':>10}")
        for name in ("batched", "one_at_a_time"):
            m = measured[name]
            print(f"{name:<16}{m['max_batch']:>10}{m['requests_per_s']:>10.0f}"
                  f"{m['tokens_per_s']:>10.0f}{m['errors']:>8}{m['mismatches_vs_alone']:>10}")
        print(f"batched / one-at-a-time: {b['requests_per_s'] / o['requests_per_s']:.2f}x "
              f"requests/s, {b['tokens_per_s'] / o['tokens_per_s']:.2f}x tokens/s")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"config": vars(a), "results": measured}, f, indent=2)
        if failures:
            print(f"FAILED: {failures} errors or mismatches", file=sys.stderr)
            return 1
        print("OK: zero errors, every completion equal to the request alone")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
