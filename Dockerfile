# One image for every Switchyard service; each Deployment picks its command
# (`python -m edge`, `python -m router`, ...). Built from the locked workspace.
# Workspace packages are installed editable from /app so that each service finds
# its Alembic migrations beside its source (services/<name>/migrations).
FROM python:3.11-slim AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs libs
COPY services services
COPY devtools devtools
COPY config config
RUN uv sync --frozen --all-packages --no-dev

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001
EXPOSE 8080 50051
CMD ["python", "-m", "edge"]
