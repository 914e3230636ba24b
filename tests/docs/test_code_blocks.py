"""Every code block in README.md and docs/*.md works as written.

- ```python blocks are saved as a module in a fresh directory and imported (a fresh namespace each), with
  the environment the quick start asks for pointing at the embedded provider, served over HTTP on a
  loopback port. When a block defines ``app``, its lifespan is run and the app is driven in-process through
  ``httpx.ASGITransport``: every GET route the block declares answers an anonymous request without a server
  error; then a browser signs in through ``/auth/login`` and the provider, and every route answers the
  signed-in user (a JSON ``sub`` is the provider's user).
- A block under ``<!-- test: build-only -->`` names a real provider (Google, GitHub, ...) or is not guard
  code (the "before" of the migration guide): it is imported, so its app is built, and nothing is called
  (that would need the network).
- A block under ``<!-- no-test -->`` is a fragment that cannot run alone. Keep these few.
- ```console and ```bash blocks: every command exists (scripts are executable files of this repository,
  ``examples.*`` modules exist, ``pip install`` extras are declared in pyproject.toml).
- ```mermaid blocks: simple sequence diagrams whose every line is a statement GitHub's Mermaid accepts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from asgi_oauth_guard.testing import OAuthTestProvider, find_guard, mimics, signed_in

from ..conftest import CLIENT_ID, CLIENT_SECRET, SECRET_KEY, BrowserFactory
from ..lifespan import running
from .markdown import ROOT, Block, all_blocks

APP = "http://app.test"
BLOCKS = all_blocks()
MAX_UNTESTED = 4


def _select(*langs: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.lang in langs and b.marker != "no-test"]


def test_the_docs_have_runnable_blocks_and_few_untested_ones() -> None:
    python = [b for b in BLOCKS if b.lang == "python"]
    untested = [b.id for b in BLOCKS if b.marker == "no-test"]
    assert len(python) >= 10
    assert len(untested) <= MAX_UNTESTED, f"too many <!-- no-test --> blocks: {untested}"
    unlabelled = [b.id for b in BLOCKS if not b.lang]
    assert not unlabelled, f"give these code blocks a language: {unlabelled}"


# -- Python ---------------------------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, provider: OAuthTestProvider) -> None:
    """The environment of docs/quickstart.md, pointing at the served embedded provider."""
    for name in (
        "OAUTH_REDIRECT_URI",
        "OAUTH_SCOPES",
        "OAUTH_AUTHORIZATION_ENDPOINT",
        "OAUTH_TOKEN_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    values = {
        "OAUTH_ISSUER": provider.issuer,
        "OAUTH_CLIENT_ID": CLIENT_ID,
        "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
        "GUARD_SECRET_KEY": SECRET_KEY,
        "PUBLIC_URL": APP,
        "GUARD_STORE": "memory://",
        "API_URL": provider.issuer + "/userinfo",
        # docs/providers.md: two presets in one guard, each with its own registration
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "ENTRA_CLIENT_ID": CLIENT_ID,
        "ENTRA_CLIENT_SECRET": CLIENT_SECRET,
        "GITHUB_CLIENT_ID": "Iv1.quickstart",
        "GITHUB_CLIENT_SECRET": CLIENT_SECRET,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@contextlib.contextmanager
def django_settings_of_its_own() -> Iterator[None]:
    """Django's settings are configured once per process: a block that configures them gets a blank slate,
    and whatever this process had (the Django example's) comes back after it."""
    from django.conf import settings
    from django.urls import clear_url_caches
    from django.utils.functional import empty

    saved = settings._wrapped
    settings._wrapped = empty
    try:
        yield
    finally:
        settings._wrapped = saved
        clear_url_caches()


@contextlib.contextmanager
def imported(block: Block, directory: Path) -> Any:
    """The block as a module named after its place in the docs, as ``uvicorn module:app`` would load it."""
    name = "docs_" + re.sub(r"\W", "_", block.id.lower())
    path = directory / f"{name}.py"
    path.write_text(block.code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    django = django_settings_of_its_own() if "settings.configure(" in block.code else contextlib.nullcontext()
    try:
        with django, warnings.catch_warnings():
            # Authlib, in the "before" half of the migration guide, deprecates parts of itself.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"authlib\b")
            spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def get_routes(code: str) -> list[str]:
    """The paths of the GET routes a block declares (Starlette ``Route``, FastAPI and Flask decorators)."""
    found = re.findall(r"""(?:\bRoute|\.get|\.route)\(\s*["'](/[^"'{}<>]*)["']""", code)
    return list(dict.fromkeys(found))


def guard_path(code: str, name: str, default: str) -> str:
    """A path setting the block gives the guard (``login_path="/login"``), or the default."""
    match = re.search(rf"""\b{name}=["'](/[^"']*)["']""", code)
    return match.group(1) if match else default


async def sign_in(browser: httpx.AsyncClient, provider: OAuthTestProvider, login_path: str) -> None:
    """Through the guard's login route and the provider's /authorize over HTTP, back to the callback."""
    login = await browser.get(login_path, params={"next": "/"})
    assert login.status_code == 303, login.text
    authorize = login.headers["location"]
    assert authorize.startswith(provider.issuer + "/authorize?"), authorize
    async with httpx.AsyncClient() as user_agent:
        approved = await user_agent.get(authorize)
    assert approved.status_code in (302, 303), approved.text
    callback = urlsplit(approved.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}" == APP and "code=" in callback.query
    done = await browser.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 303, done.text
    assert "guard_session" in done.headers.get("set-cookie", "")


@pytest.mark.anyio
@pytest.mark.usefixtures("environment")
@pytest.mark.parametrize("block", _select("python"))
async def test_python_block(
    block: Block, tmp_path: Path, provider: OAuthTestProvider, browser_factory: BrowserFactory
) -> None:
    with imported(block, tmp_path) as module:
        app = getattr(module, "app", None)
        if app is None:
            assert block.marker is None, f"{block.id}: a build-only block must define app"
            return
        assert callable(app), f"{block.id}: app is not an ASGI app"
        if block.marker == "build-only":
            return
        if block.marker == "mimics":
            await sign_in_through_mimics(app, get_routes(block.code))
            return
        routes = get_routes(block.code)
        login_path = guard_path(block.code, "login_path", "/auth/login")
        async with running(app):
            browser = browser_factory(app, base_url=APP)
            for path in routes:
                anonymous = await browser.get(path)
                assert anonymous.status_code < 500, (path, anonymous.status_code, anonymous.text)
            await sign_in(browser, provider, login_path)
            for path in routes:
                for accept in ("text/html", "application/json"):
                    answer = await browser.get(path, headers={"accept": accept})
                    assert answer.status_code < 400, (path, accept, answer.status_code, answer.text)
                    assert not answer.headers.get("location", "").startswith(login_path), (path, accept)
                    if answer.headers.get("content-type", "").startswith("application/json"):
                        body = answer.json()
                        if isinstance(body, dict) and "sub" in body:
                            assert body["sub"] == "alice", body
            signed_out = await browser.post(guard_path(block.code, "logout_path", "/auth/logout"))
            assert signed_out.status_code == 303


# What the embedded provider plays for the presets the quick starts name, by issuer.
MIMICS = {"https://accounts.google.com": mimics.google, "https://github.com": mimics.github}


async def sign_in_through_mimics(app: Any, routes: list[str]) -> None:
    """A block with several presets: a user signs in with each one, its calls rerouted to its mimic (no
    network; no lifespan, whose startup check would reach the real provider), and every route answers."""
    guard = find_guard(app)
    assert len(guard.providers) > 1
    for client in guard.providers:
        make = MIMICS[client.provider.issuer or ""]
        mimic = make(client_id=client.client_id) if make is mimics.github else make()
        idp = OAuthTestProvider(
            mimic=mimic, client_id=client.client_id, client_secret=client.provider.client_secret
        )
        sub = str(mimics.github_user_id({"sub": "alice"})) if make is mimics.github else "alice"
        async with signed_in(app, provider=idp, provider_name=client.name, base_url=APP) as browser:
            for path in routes:
                for accept in ("text/html", "application/json"):
                    answer = await browser.get(path, headers={"accept": accept})
                    assert answer.status_code < 400, (client.name, path, accept, answer.text)
                    if answer.headers.get("content-type", "").startswith("application/json"):
                        body = answer.json()
                        assert (body["provider"], body["sub"]) == (client.name, sub), body
            assert (await browser.post("/auth/logout", headers={"origin": APP})).status_code == 303
        assert idp.count("token") == 1 and idp.count("revoke") == 1  # its own endpoints


# -- Shell ----------------------------------------------------------------------------------------------

KNOWN_COMMANDS = {
    "cd",
    "curl",
    "export",
    "fastapi",
    "gunicorn",
    "pip",
    "python",
    "python3",
    "redis-cli",
    "uvicorn",
}


def _commands(code: str) -> list[list[str]]:
    commands: list[list[str]] = []
    for raw in code.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def _extras() -> set[str]:
    """The extras pyproject.toml declares (read without tomllib, which Python 3.10 lacks)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.partition("[project.optional-dependencies]\n")[2].partition("\n[")[0]
    return set(re.findall(r"^([\w-]+) = ", section, flags=re.M))


@pytest.mark.parametrize("block", _select("console", "bash", "sh", "shell"))
def test_shell_block_commands_exist(block: Block) -> None:
    commands = _commands(block.code)
    assert commands, f"{block.id}: no command"
    for words in commands:
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]  # NAME=value before a command
        if not words:
            continue
        command, args = words[0], words[1:]
        if "/" in command:
            script = ROOT / command
            assert script.is_file(), f"{block.id}: {command} does not exist"
            assert script.stat().st_mode & 0o111, f"{block.id}: {command} is not executable"
        else:
            assert command in KNOWN_COMMANDS, f"{block.id}: unknown command {command!r}"
        if command == "uvicorn":
            target = next(a for a in args if not a.startswith("-"))
            module = target.partition(":")[0]
            if module.startswith("examples."):
                assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{block.id}: {target}"
        if command == "pip" and args[:1] == ["install"]:
            for requirement in args[1:]:
                # from an index, a Git URL, or a checkout (".[fastapi]")
                match = re.fullmatch(
                    r"(?:asgi-oauth-guard|\.)\[([\w,-]+)\](?: @ git\+https://\S+)?", requirement
                )
                if match:
                    unknown = set(match.group(1).split(",")) - _extras()
                    assert not unknown, f"{block.id}: pyproject.toml has no extra {unknown}"


# -- Mermaid --------------------------------------------------------------------------------------------

_STATEMENTS = [
    r"autonumber",
    r"(participant|actor) \w+( as [^;#]+)?",
    r"\w+ ?(->>|-->>|-x|--x|-\)|--\)|->|-->)[+-]?\w+: [^;#]+",
    r"Note (over \w+(, ?\w+)?|left of \w+|right of \w+): [^;#]+",
    r"(alt|else|opt|loop|par|and|critical|break|rect)( [^;#]*)?",
    r"end",
    r"(activate|deactivate) \w+",
]


@pytest.mark.parametrize("block", _select("mermaid"))
def test_mermaid_block_is_a_simple_sequence_diagram(block: Block) -> None:
    lines = [
        line.strip() for line in block.code.splitlines() if line.strip() and not line.strip().startswith("%%")
    ]
    assert lines[0] == "sequenceDiagram", f"{block.id}: keep to sequence diagrams"
    participants = set()
    depth = 0
    for line in lines[1:]:
        assert any(re.fullmatch(pattern, line) for pattern in _STATEMENTS), f"{block.id}: {line!r}"
        declared = re.fullmatch(r"(?:participant|actor) (\w+).*", line)
        if declared:
            participants.add(declared.group(1))
        arrow = re.fullmatch(r"(\w+) ?(?:->>|-->>|-x|--x|-\)|--\)|->|-->)[+-]?(\w+):.*", line)
        if arrow:
            unknown = {arrow.group(1), arrow.group(2)} - participants
            assert not unknown, f"{block.id}: declare {unknown} as participants first: {line!r}"
        if re.match(r"(alt|opt|loop|par|critical|break|rect)\b", line):
            depth += 1
        elif line == "end":
            depth -= 1
            assert depth >= 0, f"{block.id}: 'end' without a block"
    assert depth == 0, f"{block.id}: a block is never closed with 'end'"
