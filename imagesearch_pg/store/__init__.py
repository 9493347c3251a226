"""Storage: the PostgreSQL server, engine, tables and queries. Knows vectors and attributes, not pictures."""
