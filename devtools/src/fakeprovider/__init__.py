"""The dev fake provider: a deterministic OpenAI-compatible HTTP server.

``make run`` and the integration tests point the catalog's ``fake`` provider at it.
Replies are a pure function of the request (see ``replies``; text, refusals and
forced tool calls in ``answers``), so a test can tell exactly what reached the provider; faults are scripted per request by headers or
by a ``/fault/<spec>/v1`` path prefix (see ``faults``); ``GET /_fake/requests``
shows what was received (see ``recorder``).

Run it with ``python -m fakeprovider`` (env ``FAKE_PROVIDER_HOST``, ``FAKE_PROVIDER_PORT``).
"""

from fakeprovider.app import FakeProviderApp, create_app
from fakeprovider.config import FakeProviderSettings

__all__ = ["FakeProviderApp", "FakeProviderSettings", "create_app"]
