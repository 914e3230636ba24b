from __future__ import annotations

SERVER_KEY = "server-key-for-the-tests-0123456789abcdef"
NEW_SERVER_KEY = "new-server-key-for-the-tests-0123456789abc"
