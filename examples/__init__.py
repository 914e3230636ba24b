"""Example apps, one per framework, all serving the same pages (``examples/README.md``). Each exposes
``app``; run one from the repository root:

    uvicorn examples.starlette_app:app
    uvicorn examples.fastapi_app:app
    uvicorn examples.flask_app:app
    uvicorn examples.django_app:app

They read their settings from the environment (see ``examples/_settings.py``); with no provider configured
they run against the embedded test provider, offline.
"""
