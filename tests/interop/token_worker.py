"""One worker process of the token manager interop test: ``python -m tests.interop.token_worker``.

Builds the guard from ``TOKEN_WORKER`` (JSON: the provider, the store, the keys, a clock offset), says it is
ready by creating its ``ready`` file, waits for the ``go`` file, then calls ``for_user`` ``calls`` times at
once and prints the access tokens it got as one JSON line (only in this test: they are the test's own)."""

from __future__ import annotations

import json
import os
import sys
import time

import anyio

from asgi_oauth_guard import OAuthGuard, OfflineAccess, RedisStore

START_TIMEOUT = 60.0
STORE_TIMEOUT = 15.0


async def main() -> None:
    cfg = json.loads(os.environ["TOKEN_WORKER"])
    # A generous read timeout: five processes start their 20 calls at once on a loaded machine.
    store = RedisStore.from_url(cfg["store"], key_prefix=cfg["key_prefix"], socket_timeout=STORE_TIMEOUT)
    offset = float(cfg["offset"])
    guard = OAuthGuard(
        None,  # type: ignore[arg-type]  # a worker serves no app: it only uses guard.tokens()
        issuer=cfg["issuer"],
        client_id=cfg["client_id"],
        client_secret=cfg["client_secret"],
        secret_key=cfg["secret_key"],
        server_keys=cfg["server_keys"],
        offline=OfflineAccess(),
        store=store,
        public_url=cfg["public_url"],
        clock=lambda: time.time() + offset,
    )
    await guard.check()
    await anyio.Path(cfg["ready"]).touch()
    deadline = time.monotonic() + START_TIMEOUT
    while not await anyio.Path(cfg["go"]).exists():  # the test starts every process at once
        if time.monotonic() > deadline:
            sys.exit("no go file")
        await anyio.sleep(0.005)
    tokens: list[str] = []
    async with guard.tokens() as tm:

        async def call() -> None:
            tokens.append((await tm.for_user(cfg["sub"])).access_token)

        async with anyio.create_task_group() as tg:
            for _ in range(int(cfg["calls"])):
                tg.start_soon(call)
    print(json.dumps(tokens), flush=True)
    await guard.aclose()
    await store.aclose()


if __name__ == "__main__":
    anyio.run(main)
