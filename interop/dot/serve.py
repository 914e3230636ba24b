"""django-oauth-toolkit on loopback for the asgi-oauth-guard interop tests (interop/README.md).

Binds 127.0.0.1 on a free port (or PORT), creates a SQLite database in a temporary folder of its own (or
DOT_DB), generates an RS256 signing key, migrates, registers the one confidential client, and serves the
Django project ``dotserver`` with uvicorn. Prints ``READY <issuer>`` once the socket accepts connections.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(os.environ.get("PORT") or 0)))
    sock.listen(512)
    port = sock.getsockname()[1]
    mount = os.environ.get("MOUNT", "").strip("/")
    os.environ["MOUNT"] = f"{mount}/" if mount else ""
    os.environ.setdefault("ISSUER", f"http://127.0.0.1:{port}" + (f"/{mount}" if mount else ""))
    workdir = None
    if not os.environ.get("DOT_DB"):
        workdir = tempfile.mkdtemp(prefix="interop-dot-")
        os.environ["DOT_DB"] = str(Path(workdir) / "db.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "dotserver.settings"
    sys.path.insert(0, str(HERE))
    try:
        import django
        import uvicorn
        from django.core.asgi import get_asgi_application

        django.setup()
        from dotserver import harness

        harness.prepare()
        app = get_asgi_application()
        config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_keep_alive=60)
        server = uvicorn.Server(config)
        # the socket listens already: connections made from now on wait in its backlog
        print(f"READY {os.environ['ISSUER']}", flush=True)
        server.run(sockets=[sock])
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
