"""imagesearch-pg: search by image inside PostgreSQL."""

__version__ = "0.1.0"
