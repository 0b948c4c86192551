"""``svsm ui``: a local web viewer of the sessions in a Valkey/Redis server.

Needs the ``ui`` extra (``pip install 'strands-valkey-session-manager[ui]'``)::

    from strands_valkey_session_manager.cli.viewer import create_app, serve

    serve("valkey://localhost:6379", cluster=False, prefix="strands", host="127.0.0.1", port=8765,
          allow_delete=False)
"""

from .app import MAX_PAGE_SIZE, create_app
from .server import serve

__all__ = ["MAX_PAGE_SIZE", "create_app", "serve"]
