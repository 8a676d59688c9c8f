"""One ``APIRouter`` per module; ``api/main.py`` mounts them."""
