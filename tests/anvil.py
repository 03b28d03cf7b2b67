"""A real Ethereum node for the tests: anvil (Foundry), installed from npm and started on a free port.

The embedded chain (eth-tester on py-evm) is one implementation of Ethereum; anvil
(revm) is another, with its own mempool, JSON-RPC server and error messages. Running
the same tests against both keeps the client honest about what a real node says.

``ensure_anvil()`` installs the npm package ``@foundry-rs/anvil-linux-amd64`` (a
prebuilt static binary, no postinstall script) into a cache directory reused across
runs: ``$HARBOUR_CACHE/anvil``, or ``~/.cache/harbour/anvil``. An exclusive ``fcntl``
lock on the directory makes parallel test sessions wait for one install instead of
racing npm against itself. ``Anvil`` starts the binary on a free loopback port,
waits until ``eth_chainId`` answers, and kills it on exit.

A missing npm or a failed install is an error (``AnvilUnavailable``), never a skip:
a test that silently stops running against a real node stops proving anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

PACKAGE = "@foundry-rs/anvil-linux-amd64"
VERSION = "1.7.1"
CHAIN_ID = 31337
START_TIMEOUT = 30.0
INSTALL_TIMEOUT = 600.0


class AnvilUnavailable(RuntimeError):
    """anvil could not be installed or started; the message says what to do."""


def cache_dir() -> Path:
    base = os.environ.get("HARBOUR_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "harbour"
    return root / "anvil"


def _installed(root: Path) -> Path | None:
    package = root / "node_modules" / PACKAGE
    binary = package / "bin" / "anvil"
    try:
        version = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if version != VERSION or not os.access(binary, os.X_OK):
        return None
    return binary


def ensure_anvil() -> Path:
    """The anvil binary, installed with npm into the cache directory on first use."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise AnvilUnavailable(f"{PACKAGE} is built for Linux x86-64; this is {platform.system()} {platform.machine()}")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the file closes; other sessions wait here
        binary = _installed(root)
        if binary is not None:
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise AnvilUnavailable(
                f"npm is not installed, so the tests cannot install anvil ({PACKAGE}); "
                "install Node.js 20+ with npm (Debian: apt-get install nodejs npm)"
            )
        command = [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", f"{PACKAGE}@{VERSION}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise AnvilUnavailable(f"{' '.join(command)} took longer than {INSTALL_TIMEOUT:g} s") from None
        binary = _installed(root)
        if result.returncode != 0 or binary is None:
            output = (result.stderr.strip() or result.stdout.strip())[-2000:]
            raise AnvilUnavailable(f"{' '.join(command)} failed (exit {result.returncode}):\n{output}")
        return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chain_id(url: str, timeout: float = 1.0) -> int | None:
    """``eth_chainId`` of the node at ``url``, or None while it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.load(response)["result"], 16)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Anvil:
    """``with Anvil(binary) as url:`` a fresh chain 31337 on 127.0.0.1, auto-mining, ten funded dev accounts."""

    def __init__(self, binary: Path | None = None, *, chain_id: int = CHAIN_ID) -> None:
        self.binary = binary if binary is not None else ensure_anvil()
        self.chain_id = chain_id
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> str:
        try:
            for _ in range(3):  # another process may take the free port between the probe and anvil's bind
                if self._start():
                    return self.url
            raise AnvilUnavailable(f"anvil did not start: {self._output()}")
        except BaseException:
            self._stop()
            raise

    def _start(self) -> bool:
        self._stop()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process; closed by _stop)
        command = [str(self.binary), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(self.chain_id)]
        self._process = subprocess.Popen(
            [*command, "--silent"], stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            answer = chain_id(self.url)
            if answer is not None:
                if answer != self.chain_id:
                    raise AnvilUnavailable(f"{self.url} answers chain id {answer}, not {self.chain_id}")
                return True
            time.sleep(0.05)
        raise AnvilUnavailable(f"anvil did not answer eth_chainId within {START_TIMEOUT:g} s: {self._output()}")

    def _output(self) -> str:
        if self._log is None:
            return "(no output)"
        self._log.seek(0)
        return self._log.read().decode(errors="replace").strip()[-2000:] or "(no output)"

    def _stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop()
