# The HTTP front end: no torch, no editing core, no checkpoints in this image (docs/architecture.md).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY store ./store
COPY service ./service
COPY cli ./cli
RUN pip install --no-cache-dir ".[service]" \
    && python -c "import sys; sys.modules['torch'] = None; import service.main, cli.commands.api"
EXPOSE 8000
CMD ["factpatch", "api", "--host", "0.0.0.0", "--port", "8000"]
