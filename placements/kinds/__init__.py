"""One module per kind of placement; each registers its classes (``registry.autodiscover``)."""
