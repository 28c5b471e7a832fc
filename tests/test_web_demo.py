"""``cadence demo --serve`` as a new user runs it: a real process serving the web app
beside /healthz, with sign-in links that work over real HTTP."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.test_service import free_port, get
from tests.web_helpers import csrf_of


@pytest.mark.slow
def test_demo_serve_prints_links_that_sign_in(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.pop("http_proxy", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.app.cli", "demo", str(tmp_path / "demo"), "--serve",
         "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        links: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while len(links) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            found = re.match(r"Sign in as the (\w+) \(.*\): (\S+)", line)
            if found:
                links[found.group(1)] = found.group(2)
        assert set(links) == {"employee", "leader", "administrator"}, links
        while time.monotonic() < deadline:
            try:
                if get(port, "/healthz")[0] in (200, 503):
                    break
            except OSError:
                time.sleep(0.2)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(links["leader"], timeout=10) as page:
            html = page.read().decode()
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(links["leader"]).query)["t"][0]
        form = urllib.parse.urlencode({"t": token, "csrf": csrf_of(html)}).encode()
        with opener.open(f"http://127.0.0.1:{port}/signin/link", form, timeout=10) as page:
            home = page.read().decode()
        assert "Hallo Ben Ortiz" in home and "Mein Team" in home  # Ben reads German
        with opener.open(f"http://127.0.0.1:{port}/team", timeout=10) as page:
            assert "Emma Clarke" in page.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
