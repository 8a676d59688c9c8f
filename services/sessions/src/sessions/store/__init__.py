"""Sessions storage: table models (``models``) and repository functions (``repo``)."""
