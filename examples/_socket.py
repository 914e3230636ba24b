"""``/ws`` of the examples: a WebSocket that sends the signed-in user's ``sub`` as its first message.

Anonymous handshakes are refused before they are accepted (``requires_login``: a 401, or close code 1008);
so are handshakes from another site's page (the guard checks ``Origin``).
"""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_oauth_guard.integrations.starlette import get_identity, requires_login

__all__ = ["whoami_socket"]


@requires_login
async def whoami_socket(websocket: WebSocket) -> None:
    identity = get_identity(websocket)
    assert identity is not None
    await websocket.accept()
    await websocket.send_text(identity.sub)
    try:
        while True:  # then echo, until the client closes
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
