"""Run by the Python of a fresh virtual environment where the built wheel is installed (not this checkout):
serve the embedded provider on a loopback port, load one quick start as ``uvicorn module:app`` would, sign in
through its guard, and load every GET route it declares.

    python quickstart_driver.py path/to/block.py
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

# This file's directory is first on sys.path; nothing of the checkout may be imported from there.
sys.path.pop(0)

import uvicorn

import asgi_oauth_guard
from asgi_oauth_guard.testing import OAuthTestProvider, find_guard, mimics, signed_in

CLIENT_ID, CLIENT_SECRET = "quickstart-client", "quickstart-secret-0123456789"
APP = "http://app.test"


def serve() -> tuple[OAuthTestProvider, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    provider = OAuthTestProvider(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    server = uvicorn.Server(uvicorn.Config(provider, log_level="warning", lifespan="off", ws="none"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start the provider"
        time.sleep(0.01)  # waiting for the server thread, bounded by the deadline
    return provider, server


async def drive(path: Path, code: str, provider: OAuthTestProvider) -> list[str]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    routes = list(dict.fromkeys(re.findall(r"""(?:\bRoute|\.get|\.route)\(\s*["'](/[^"'{}<>]*)["']""", code)))
    if "providers=[" in code:
        await through_mimics(module.app, routes)
        return routes
    async with signed_in(module.app, provider=provider, base_url=APP) as client:
        for route in routes:
            for accept in ("text/html", "application/json"):
                answer = await client.get(route, headers={"accept": accept})
                assert answer.status_code < 400, (route, accept, answer.status_code, answer.text)
                if answer.headers.get("content-type", "").startswith("application/json"):
                    body = answer.json()
                    assert not isinstance(body, dict) or body.get("sub", "alice") == "alice", body
    return routes


async def through_mimics(app: object, routes: list[str]) -> None:
    """The quick start with several presets (Google and GitHub): a user signs in with each, its calls
    rerouted in-process to the embedded provider playing it (no network)."""
    guard = find_guard(app)
    for client in guard.providers:
        github = client.provider.issuer == "https://github.com"
        mimic = mimics.github(client_id=client.client_id) if github else mimics.google()
        idp = OAuthTestProvider(
            mimic=mimic, client_id=client.client_id, client_secret=client.provider.client_secret
        )
        sub = str(mimics.github_user_id({"sub": "alice"})) if github else "alice"
        async with signed_in(app, provider=idp, provider_name=client.name, base_url=APP) as browser:
            for route in routes:
                answer = await browser.get(route, headers={"accept": "application/json"})
                assert answer.status_code < 400, (client.name, route, answer.status_code, answer.text)
                if answer.headers.get("content-type", "").startswith("application/json"):
                    assert (answer.json()["provider"], answer.json()["sub"]) == (client.name, sub)


def main() -> None:
    located = Path(asgi_oauth_guard.__file__).resolve()
    assert Path(sys.prefix).resolve() in located.parents, f"not the installed wheel: {located}"
    provider, server = serve()
    os.environ.update(
        {
            "OAUTH_ISSUER": provider.issuer,
            "OAUTH_CLIENT_ID": CLIENT_ID,
            "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "GUARD_SECRET_KEY": "quickstart-guard-secret-key-0123456789",
            "PUBLIC_URL": APP,
            "API_URL": provider.issuer + "/userinfo",
            "GOOGLE_CLIENT_ID": CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "GITHUB_CLIENT_ID": "Iv1.quickstart",
            "GITHUB_CLIENT_SECRET": CLIENT_SECRET,
        }
    )
    try:
        path = Path(sys.argv[1])
        routes = asyncio.run(drive(path, path.read_text(encoding="utf-8"), provider))
    finally:
        server.should_exit = True
    print("signed in; routes answered:", " ".join(routes))


if __name__ == "__main__":
    main()
