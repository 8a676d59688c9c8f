"""Sessions storage: table models (``models``)."""
