# The HTTP front end: no torch in this image.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY editing ./editing
COPY service ./service
COPY workers ./workers
RUN pip install --no-cache-dir ".[service]" \
    && python -c "import sys; sys.modules['torch'] = None; import service.main"
EXPOSE 8000
CMD ["factpatch", "api", "--host", "0.0.0.0", "--port", "8000"]
