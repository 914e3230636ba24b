"""A small Django project around django-oauth-toolkit, for the interop tests (interop/README.md)."""
