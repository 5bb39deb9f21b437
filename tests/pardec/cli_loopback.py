#!/usr/bin/env python3
"""compare_strategies' newer flags on a tiny random model, in seconds:
 - --dump-calls: one record per generation call of each strategy (as many as the strategy's
   batches), replies equal to full_results.json's, prompt ids and generated ids per row, the
   generated ids ending at most once with a stop token, sequential turns as single-row calls;
 - refusals: --judge on data that is not long-form, --judge without --judge-model, --dump-calls
   with --use-api (each exits 1 naming the flag);
 - --judge end to end against the project's own server on loopback: a tiny
random model (tests/serve/tiny_server_model.py) answers synthetic CMB-Clin cases locally and the
same kind of model, served by crossbatch_server, is the judge. A random model's replies hold no
scores, so this checks the path, not the quality: every answer of every strategy was sent to the
judge and got a reply, each reply went through the score parser (four scores or a note saying
what is missing), the summary counts every answer, and a wrong judge model id stops the run with
the server's 404.

  tests/pardec/cli_loopback.py build/cpu/examples/serve/crossbatch_server \
      build/cpu/examples/parallel_decoding/compare_strategies
"""
import json
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))
from server_process import Server  # noqa: E402
from tiny_server_model import write_tiny_model  # noqa: E402

CRITERIA = ["fluency", "relevance", "completeness", "proficiency"]


def main():
    server_bin, compare_bin = sys.argv[1], sys.argv[2]
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL:", what)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        model = tmp / "tiny"
        write_tiny_model(str(model), 1, max_positions=4096)
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_pardec_data.py"), "--out-dir", str(tmp / "data"),
                        "--per-size", "1", "--stories", "3"], check=True, stdout=subprocess.DEVNULL)
        # --dump-calls.
        run, dump_path = tmp / "dumped", tmp / "calls.json"
        r = subprocess.run([compare_bin, "--dataset", "squad", "--data", str(tmp / "data" / "squad_groups.json"),
                            "--model-name", str(model), "--context-count", "3", "--min-questions", "2",
                            "--max-questions", "4", "--max-new-tokens", "5", "--dependency-max-new-tokens", "8",
                            "--strategies", "all_in_one,sequential,batch,collab_llm", "--quiet",
                            "--dump-calls", str(dump_path), "--json-out", str(run)], capture_output=True, text=True)
        check(r.returncode == 0, "dumped run exits 0 (stderr: %s)" % r.stderr[-500:])
        if r.returncode == 0:
            dump = json.loads(dump_path.read_text())
            res = json.loads((run / "full_results.json").read_text())
            stop = set(dump["stop_ids"])
            check(dump["pad_id"] in stop and dump["dtype"] == "float32", "dump header: stop ids, pad, dtype")
            check(len(dump["groups"]) == len(res["contexts"]) == 3, "a dump entry per group")
            for dg, c in zip(dump["groups"], res["contexts"]):
                check(dg["id"] == c["id"] and dg["questions"] == len(c["questions_text"]), "group ids match")
                for name, s in c["strategies"].items():
                    calls = dg["strategies"][name]["calls"]
                    check(len(calls) == s["batches"], "%s: one record per batch" % name)
                    check(dg["strategies"][name]["latency"] == s["latency"], "%s: the latency recorded" % name)
                    for call in calls:
                        rows = len(call["conversations"])
                        check(len(call["prompt_ids"]) == len(call["token_ids"]) == len(call["replies"]) == rows,
                              "%s: ids and replies per row" % name)
                        for t in call["token_ids"]:
                            check(0 < len(t) <= call["max_new_tokens"] and not (set(t[:-1]) & stop),
                                  "%s: generated ids within max_new_tokens, a stop token only last" % name)
                    if name == "sequential":
                        check(all(len(k["conversations"]) == 1 for k in calls), "sequential: one row per turn")
                        check([k["replies"][0] for k in calls] == [s["raw_replies"]["Q%d" % (i + 1)]
                                                                   for i in range(len(calls))],
                              "sequential: the dumped replies are the results' replies")
                    if name == "batch":
                        check(calls[0]["replies"] == [s["raw_replies"]["Q%d" % (i + 1)] for i in range(dg["questions"])],
                              "batch: the dumped replies are the results' replies")
        # Refusals.
        squad = [compare_bin, "--dataset", "squad", "--data", str(tmp / "data" / "squad_groups.json"),
                 "--model-name", str(model), "--context-count", "1", "--max-new-tokens", "2", "--quiet"]
        for extra, needle in ((["--judge", "--judge-model", "x"], "--judge: the LLM judge rates long-form"),
                              (["--judge"], "--judge needs --judge-model"),
                              (["--use-api", "--api-model", "x", "--api-base", "http://127.0.0.1:9/v1",
                                "--dump-calls", str(tmp / "no.json")], "--dump-calls: local inference only")):
            r = subprocess.run(squad + extra, capture_output=True, text=True)
            check(r.returncode == 1 and needle in r.stderr, "%s refused with %r (got %d: %s)" % (
                " ".join(extra), needle, r.returncode, r.stderr[-300:]))

        server = Server(server_bin, str(model), "--max-batch", 4)
        try:
            status, models = server.request("GET", "/v1/models")
            judge_id = models["data"][0]["id"]
            base = [compare_bin, "--dataset", "cmb", "--cmb-subset", "CMB-Clin",
                    "--data", str(tmp / "data" / "cmb_clin.json"), "--model-name", str(model),
                    "--context-count", "2", "--min-questions", "1", "--max-questions", "3",
                    "--max-new-tokens", "6", "--strategies", "batch,sequential", "--quiet",
                    "--judge", "--judge-api-base", server.url + "/v1", "--judge-max-new-tokens", "12",
                    "--api-retries", "0", "--api-timeout", "60"]
            out = tmp / "run"
            r = subprocess.run(base + ["--judge-model", judge_id, "--json-out", str(out)],
                               capture_output=True, text=True)
            check(r.returncode == 0, "judged run exits 0 (stderr: %s)" % r.stderr[-500:])
            if r.returncode == 0:
                res = json.loads((out / "full_results.json").read_text())
                answers = 0
                for c in res["contexts"]:
                    for name, s in c["strategies"].items():
                        check(set(s["judge"]) == set(s["answers"]), "%s: a judge entry per answer" % name)
                        for qid, j in s["judge"].items():
                            answers += 1
                            check(isinstance(j.get("reply"), str), "%s %s: the judge's reply kept" % (name, qid))
                            scored = [k for k in CRITERIA if j.get(k) is not None]
                            check(all(1 <= j[k] <= 5 for k in scored), "%s %s: scores in 1..5" % (name, qid))
                            check(len(scored) == 4 or bool(j.get("note")),
                                  "%s %s: an unscored criterion has a note" % (name, qid))
                total = sum(s["judge"]["answers"] for s in res["summary"].values())
                check(answers > 0 and total == answers,
                      "summary counts every judged answer (%d vs %d)" % (total, answers))
                check("LLM judge" in r.stdout, "the judge table is printed")
                print("judged %d answers through %s; first reply: %r" % (
                    answers, server.url, res["contexts"][0]["strategies"]["batch"]["judge"]["Q1"]["reply"]))
            r = subprocess.run(base + ["--judge-model", "nope"], capture_output=True, text=True)
            check(r.returncode != 0 and "HTTP 404" in r.stderr and "nope" in r.stderr,
                  "a wrong judge model stops with the server's 404 (got %d: %s)" % (r.returncode, r.stderr[-300:]))
        finally:
            server.stop()
    print("cli checks:", "FAILED %d checks" % len(failures) if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
