"""A PostgreSQL database backend: Django's, with a cheaper check of pooled connections."""
