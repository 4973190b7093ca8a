"""Persistence: SQLAlchemy 2 models, engine factory, repositories, Alembic migrations."""
