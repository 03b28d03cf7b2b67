"""The custody REST API (FastAPI): routes, authentication, roles and problem documents."""
