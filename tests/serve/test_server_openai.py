"""crossbatch_server on loopback with tiny random models (tiny_server_model.py), checked with the
real `openai` client and raw HTTP:
  - /v1/completions and /v1/chat/completions, streamed and not (the streamed text equals the
    non-streamed text for the same seed), /v1/models, /health;
  - LDA through `lda_alpha` equals /generate_lda's tokens for the same request and seed, and
    lda_alpha 0 equals the after model; /generate's two completions equal /v1/completions of
    each model; /generate_lda_batch's results equal /generate_lda with seed + i;
  - the reference routes' fields, defaults and /tokenizer_compatibility;
  - every kind of bad request (invalid JSON, a non-object body, wrong types, out-of-range
    values, an empty prompt, a prompt over the limit or the context, an unknown route, a wrong
    method, a body over the limit, an unknown model, an unsupported field, a full queue, a
    timeout), each answered with its status and the field it names, and the server healthy
    afterwards; a streaming client that disconnects cancels its request;
  - plain serving with one model (no --before-model): lda_alpha and /generate_lda refused.
Run: python3 tests/serve/test_server_openai.py build/cpu/examples/serve/crossbatch_server
"""
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server_process import Server, server_binary  # noqa: E402
from tiny_server_model import write_tiny_model  # noqa: E402

BINARY = None


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="crossbatch_serve_")
        cls.after = os.path.join(cls.tmp, "after")
        cls.before = os.path.join(cls.tmp, "before")
        write_tiny_model(cls.after, 1, max_positions=96)
        write_tiny_model(cls.before, 2, max_positions=96)
        cls.server = Server(BINARY, cls.after, "--before-model", cls.before, "--max-batch", 4,
                            "--max-queue", 32, "--max-body-bytes", 65536,
                            "--max-prompt-tokens", 60, "--max-new-tokens", 48)
        cls.plain = Server(BINARY, cls.after, "--max-batch", 2)
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused",
                                   max_retries=0)

    @classmethod
    def tearDownClass(cls):
        for s in (cls.server, cls.plain):
            s.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_error(self, reply, status, param):
        code, body = reply
        self.assertEqual(code, status, body)
        self.assertIn("error", body)
        self.assertEqual(body["error"]["param"], param, body)
        self.assertTrue(body["error"]["message"])

    # --- OpenAI API -------------------------------------------------------------------------
    def test_models(self):
        ids = [m.id for m in self.client.models.list().data]
        self.assertEqual(ids, ["after", "before"])

    def test_completions_streamed_and_not(self):
        args = dict(model="after", prompt="Hello world", max_tokens=8, temperature=0.9, seed=11)
        r = self.client.completions.create(**args)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(len(r.choices), 1)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertTrue(1 <= r.usage.completion_tokens <= 8)
        again = self.client.completions.create(**args)
        self.assertEqual(again.choices[0].text, r.choices[0].text)  # same seed, same text
        other = self.client.completions.create(**{**args, "seed": 12, "temperature": 2.0})
        self.assertNotEqual(other.choices[0].text, r.choices[0].text)
        chunks = list(self.client.completions.create(**args, stream=True))
        self.assertEqual("".join(c.choices[0].text for c in chunks), r.choices[0].text)
        self.assertEqual(chunks[-1].choices[0].finish_reason, r.choices[0].finish_reason)
        # n choices draw with seeds seed, seed + 1: choice 0 is the n = 1 completion.
        two = self.client.completions.create(**args, n=2)
        self.assertEqual([c.index for c in two.choices], [0, 1])
        self.assertEqual(two.choices[0].text, r.choices[0].text)

    def test_chat_streamed_and_not(self):
        messages = [{"role": "user", "content": "Say something"}]
        r = self.client.chat.completions.create(model="after", messages=messages, max_tokens=10,
                                                seed=5)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        text = r.choices[0].message.content
        stream = self.client.chat.completions.create(model="after", messages=messages,
                                                     max_tokens=10, seed=5, stream=True)
        chunks = list(stream)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in chunks), text)
        self.assertEqual(chunks[-1].choices[0].finish_reason, r.choices[0].finish_reason)
        # The raw stream ends with data: [DONE].
        conn = http.client.HTTPConnection(urllib.parse.urlparse(self.server.url).netloc, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps(
            {"messages": messages, "max_tokens": 3, "stream": True}),
            {"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/event-stream"))
        events = [e for e in resp.read().decode().split("\n\n") if e]
        self.assertEqual(events[-1], "data: [DONE]")
        conn.close()

    def test_lda_through_the_openai_api(self):
        prompt = "Tell me a story"
        ref = self.server.request("POST", "/generate_lda", {
            "prompt": prompt, "alpha": 2.0, "max_new_tokens": 12, "seed": 9})
        self.assertEqual(ref[0], 200, ref)
        r = self.client.chat.completions.create(
            model="after", messages=[{"role": "user", "content": prompt}], max_tokens=12,
            temperature=0.8, top_p=0.95, seed=9, extra_body={"lda_alpha": 2.0})
        self.assertEqual(r.choices[0].message.content, ref[1]["completion"])
        # alpha 0 is the after model itself; a large alpha moves away from it.
        plain = self.client.completions.create(model="after", prompt=prompt, max_tokens=12,
                                               seed=3, temperature=0)
        lda0 = self.client.completions.create(model="after", prompt=prompt, max_tokens=12,
                                              seed=3, temperature=0, extra_body={"lda_alpha": 0})
        lda8 = self.client.completions.create(model="after", prompt=prompt, max_tokens=12,
                                              seed=3, temperature=0, extra_body={"lda_alpha": 8})
        self.assertEqual(lda0.choices[0].text, plain.choices[0].text)
        self.assertNotEqual(lda8.choices[0].text, plain.choices[0].text)

    # --- reference routes -------------------------------------------------------------------
    def test_generate_lda_fields_and_defaults(self):
        code, j = self.server.request("POST", "/generate_lda", {"prompt": "Hi", "seed": 1})
        self.assertEqual(code, 200, j)
        for key in ("prompt", "formatted_prompt", "completion", "text", "alpha", "model_after",
                    "model_before", "tokens_generated", "stopped_early"):
            self.assertIn(key, j)
        self.assertEqual(j["alpha"], 1.0)
        self.assertEqual((j["model_after"], j["model_before"]), ("after", "before"))
        self.assertEqual(j["text"], j["formatted_prompt"] + j["completion"])
        self.assertIn("<|im_start|>user\nHi<|im_end|>", j["formatted_prompt"])  # chat template on
        self.assertTrue(j["tokens_generated"] == 48 or j["stopped_early"])  # default 80, limit 48
        self.assertLessEqual(j["tokens_generated"], 48)
        raw = self.server.request("POST", "/generate_lda", {
            "prompt": "Hi", "apply_chat_template": False, "max_new_tokens": 4, "seed": 1,
            "do_sample": False, "stop_at_eos": False})
        self.assertEqual(raw[1]["formatted_prompt"], "Hi")
        self.assertEqual(raw[1]["tokens_generated"], 4)
        sys_prompt = self.server.request("POST", "/generate_lda", {
            "prompt": "Hi", "system_prompt": "Be brief", "max_new_tokens": 2})
        self.assertIn("<|im_start|>system\nBe brief<|im_end|>", sys_prompt[1]["formatted_prompt"])

    def test_generate_lda_batch_equals_single_requests(self):
        prompts = ["one", "two words", "three little words"]
        code, j = self.server.request("POST", "/generate_lda_batch", {
            "prompts": prompts, "alpha": 1.5, "max_new_tokens": 6, "seed": 100,
            "temperature": 1.0, "top_p": 1.0})
        self.assertEqual(code, 200, j)
        self.assertEqual(j["batch_size"], 3)
        self.assertEqual((j["alpha"], j["model_after"], j["model_before"]), (1.5, "after", "before"))
        for i, (p, res) in enumerate(zip(prompts, j["results"])):
            self.assertEqual(res["prompt"], p)
            self.assertEqual(res["tokens_generated"], 6)  # fixed length, as the reference's batch
            single = self.server.request("POST", "/generate_lda", {
                "prompt": p, "alpha": 1.5, "max_new_tokens": 6, "seed": 100 + i,
                "temperature": 1.0, "top_p": 1.0, "stop_at_eos": False})[1]
            self.assertEqual(res["completion_ids"], single["completion_ids"])

    def test_generate_both_models(self):
        code, j = self.server.request("POST", "/generate", {
            "prompt": "Once", "apply_chat_template": False, "max_new_tokens": 7, "seed": 4,
            "temperature": 0.7, "top_p": 0.9})
        self.assertEqual(code, 200, j)
        for side in ("after", "before"):
            r = self.client.completions.create(model=side, prompt="Once", max_tokens=7, seed=4,
                                               temperature=0.7, top_p=0.9)
            self.assertEqual(j[side]["completion"], r.choices[0].text, side)
        self.assertNotEqual(j["after"]["completion_ids"], j["before"]["completion_ids"])

    def test_tokenizer_compatibility(self):
        code, j = self.server.request("GET", "/tokenizer_compatibility")
        self.assertEqual(code, 200)
        self.assertTrue(j["compatible"])
        self.assertEqual(j["vocab_size_after"], j["vocab_size_before"])

    # --- bad input ----------------------------------------------------------------------------
    def test_bad_requests_name_the_field(self):
        s = self.server
        long_prompt = " ".join(["word"] * 100)
        cases = [
            ("POST", "/v1/completions", None, b"{not json", 400, "body"),
            ("POST", "/v1/completions", None, b"[1, 2]", 400, "body"),
            ("POST", "/v1/completions", {"prompt": "x", "max_tokens": "5"}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2.5}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 0}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 49}, None, 400, "max_tokens"),
            ("POST", "/v1/completions", {"prompt": "x", "temperature": 2.5}, None, 400, "temperature"),
            ("POST", "/v1/completions", {"prompt": "x", "top_p": 0}, None, 400, "top_p"),
            ("POST", "/v1/completions", {"prompt": "x", "n": 9}, None, 400, "n"),
            ("POST", "/v1/completions", {"prompt": "x", "seed": -1}, None, 400, "seed"),
            ("POST", "/v1/completions", {"prompt": "x", "stream": "yes"}, None, 400, "stream"),
            ("POST", "/v1/completions", {"prompt": "x", "lda_alpha": 11}, None, 400, "lda_alpha"),
            ("POST", "/v1/completions", {"prompt": "x", "stop": ["\n"]}, None, 400, "stop"),
            ("POST", "/v1/completions", {"prompt": ""}, None, 400, "prompt"),
            ("POST", "/v1/completions", {}, None, 400, "prompt"),
            ("POST", "/v1/completions", {"prompt": 5}, None, 400, "prompt"),
            ("POST", "/v1/completions", {"prompt": ["a", 3]}, None, 400, "prompt[1]"),
            ("POST", "/v1/completions", {"prompt": [1, 99999]}, None, 400, "prompt"),
            ("POST", "/v1/completions", {"prompt": long_prompt}, None, 400, "prompt"),
            # 55 prompt tokens fit the limit of 60, but not with 45 new ones in 96 positions.
            ("POST", "/v1/completions", {"prompt": list(range(55)), "max_tokens": 45}, None, 400,
             "prompt"),
            ("POST", "/v1/completions", {"prompt": "x", "model": "nope"}, None, 404, "model"),
            ("POST", "/v1/chat/completions", {"messages": []}, None, 400, "messages"),
            ("POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]},
             None, 400, "messages[0].role"),
            ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]},
             None, 400, "messages[0].content"),
            ("POST", "/generate_lda", {"prompt": "x", "alpha": 10.5}, None, 400, "alpha"),
            ("POST", "/generate_lda", {"prompt": "x", "max_new_tokens": 0}, None, 400,
             "max_new_tokens"),
            ("POST", "/generate_lda", {"prompt": "x", "temperature": 0}, None, 400, "temperature"),
            ("POST", "/generate_lda", {"prompt": "x", "top_p": 1.5}, None, 400, "top_p"),
            ("POST", "/generate_lda", {"prompt": "x", "do_sample": 1}, None, 400, "do_sample"),
            ("POST", "/generate_lda", {"prompt": ""}, None, 400, "prompt"),
            ("POST", "/generate_lda", {"prompt": ["x"]}, None, 400, "prompt"),
            ("POST", "/generate_lda", {"prompt": "x", "system_prompt": 4}, None, 400,
             "system_prompt"),
            ("POST", "/generate_lda_batch", {"prompts": []}, None, 400, "prompts"),
            ("POST", "/generate_lda_batch", {"prompts": ["a", ""]}, None, 400, "prompts[1]"),
            ("POST", "/generate_lda_batch", {"prompts": "a"}, None, 400, "prompts"),
            ("POST", "/generate", {"prompt": None}, None, 400, "prompt"),
            ("GET", "/no/such/route", None, None, 404, "route"),
            ("GET", "/v1/completions", None, None, 405, "method"),
            ("DELETE", "/generate_lda", None, None, 405, "method"),
            ("POST", "/health", {}, None, 405, "method"),
            ("POST", "/v1/completions", None, b'{"prompt": "' + b"a" * 70000 + b'"}', 413, "body"),
        ]
        for method, path, body, raw, status, param in cases:
            with self.subTest(path=path, body=body if raw is None else raw[:40]):
                self.assert_error(s.request(method, path, body, raw), status, param)
        # The openai client sees the same errors.
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="after", prompt="x", max_tokens=1000)
        self.assertEqual(e.exception.body["param"], "max_tokens")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="gpt-4", prompt="x")
        # Still healthy, still serving.
        code, h = s.request("GET", "/health")
        self.assertEqual((code, h["status"]), (200, "ok"))
        self.assertEqual(self.client.completions.create(model="after", prompt="ok",
                                                        max_tokens=2).object, "text_completion")
        time.sleep(0.2)
        self.assertTrue(any("POST /v1/completions 413 " in line for line in s.log), s.log[-5:])

    def test_one_log_line_per_request(self):
        # The log is read by a thread: let the lines of earlier tests arrive before counting.
        before = -1
        while before != len(self.server.log):
            before = len(self.server.log)
            time.sleep(0.3)
        self.server.request("POST", "/v1/completions", {"prompt": "log me", "max_tokens": 3,
                                                        "temperature": 0, "ignore_eos": True})
        self.server.request("GET", "/nope")
        time.sleep(0.2)
        lines = [l for l in self.server.log[before:] if l.startswith("[serve] ")]
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r"^\[serve\] POST /v1/completions 200 tokens=3 ms=\d")
        self.assertRegex(lines[1], r"^\[serve\] GET /nope 404 tokens=0 ms=")

    # --- plain serving ----------------------------------------------------------------------
    def test_plain_server(self):
        p = self.plain
        code, j = p.request("POST", "/v1/completions", {"prompt": "Hello world", "max_tokens": 8,
                                                        "temperature": 0.9, "seed": 11})
        self.assertEqual(code, 200, j)
        # The same model, seed and request as on the LDA server: the same text.
        r = self.client.completions.create(model="after", prompt="Hello world", max_tokens=8,
                                           temperature=0.9, seed=11)
        self.assertEqual(j["choices"][0]["text"], r.choices[0].text)
        self.assert_error(p.request("POST", "/v1/completions", {"prompt": "x", "lda_alpha": 1}),
                          400, "lda_alpha")
        self.assert_error(p.request("POST", "/generate_lda", {"prompt": "x"}), 400, "alpha")
        code, g = p.request("POST", "/generate", {"prompt": "x", "max_new_tokens": 2})
        self.assertEqual(code, 200, g)
        self.assertIsNone(g["before"])
        self.assertEqual([m["id"] for m in p.request("GET", "/v1/models")[1]["data"]], ["after"])


class LimitsTest(unittest.TestCase):
    """A slower model (hidden 1024, 4096 positions) so that a request of 3400 tokens runs for
    seconds: one row, one queue place, a 1.5-second timeout. The tied LM head (50k x 1024 float32,
    206 MB read per token) sets the pace: 3400 tokens took 27 s on the 2-core dev machine (one core
    busy with a build). At hidden 256 they took 5 s there, and CI once finished one inside the
    timeout (200 instead of 504)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="crossbatch_serve_slow_")
        cls.model = os.path.join(cls.tmp, "slow")
        write_tiny_model(cls.model, 3, max_positions=4096, layers=4, hidden=1024)
        cls.server = Server(BINARY, cls.model, "--max-batch", 1, "--max-queue", 1,
                            "--max-prompt-tokens", 32, "--max-new-tokens", 3500, "--timeout", 1.5)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    long_request = {"prompt": "x", "max_tokens": 3400, "ignore_eos": True, "temperature": 0}

    def wait_idle(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            h = self.server.request("GET", "/health")[1]
            if h["running"] == 0 and h["queued"] == 0:
                return True
            time.sleep(0.02)
        return False

    def test_queue_full_and_timeout(self):
        replies = [None] * 4

        def send(i):
            replies[i] = self.server.request("POST", "/v1/completions", self.long_request)

        def until(key, value):
            end = time.time() + 5
            while time.time() < end and self.server.request("GET", "/health")[1][key] != value:
                time.sleep(0.01)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        threads[0].start()
        until("running", 1)  # the first holds the only row
        threads[1].start()
        until("queued", 1)  # the second holds the only queue place
        for t in threads[2:]:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r[0] for r in replies)
        # One runs and times out, one waits and times out, two find the queue full.
        self.assertEqual(statuses, [429, 429, 504, 504], replies)
        for code, body in replies:
            self.assertEqual(body["error"]["param"], "timeout" if code == 504 else None)
        self.assertTrue(self.wait_idle(5))

    def test_disconnect_cancels_a_stream(self):
        self.assertTrue(self.wait_idle(5))
        conn = http.client.HTTPConnection(urllib.parse.urlparse(self.server.url).netloc, timeout=30)
        conn.request("POST", "/v1/completions", json.dumps({**self.long_request, "stream": True,
                                                            "max_tokens": 3400}),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        resp.read(200)  # a few events
        t0 = time.time()
        conn.sock.close()
        conn.close()
        # Cancelled at the next boundary after the failed write, well before the 1.5 s timeout.
        self.assertTrue(self.wait_idle(1.0), "the stream was not cancelled")
        self.assertLess(time.time() - t0, 1.0)
        self.assertEqual(self.server.request("GET", "/health")[1]["status"], "ok")


if __name__ == "__main__":
    BINARY = os.path.abspath(server_binary())
    unittest.main(verbosity=2)
