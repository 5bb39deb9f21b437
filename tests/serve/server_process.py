"""Starts crossbatch_server on loopback for the Python server tests and stops it afterwards."""
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request


class Server:
    def __init__(self, binary, model, *extra):
        self.proc = subprocess.Popen(
            [binary, "--model", model, "--host", "127.0.0.1", "--port", "0", "--device", "cpu",
             *map(str, extra)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError("server did not start: " + line + self.proc.stderr.read())
        self.url = line.split()[-1]
        self.log = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def request(self, method, path, body=None, raw=None):
        """(status, parsed JSON body) of one request; body is JSON-encoded, raw sent as is."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


def server_binary():
    if len(sys.argv) < 2:
        raise SystemExit("usage: %s PATH/TO/crossbatch_server" % sys.argv[0])
    return sys.argv.pop(1)
