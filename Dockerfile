# mejai: one image for every process (web, Celery worker, Mattermost worker).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# Static files are collected at build time; whitenoise serves them from the web process.
RUN SECRET_KEY=build-only DEBUG=0 MEJAI_VAR_DIR=/tmp/mejai-build python manage.py collectstatic --noinput -v 0 \
    && useradd --create-home --uid 10001 mejai \
    && mkdir -p /app/var && chown -R mejai /app/var
USER mejai

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

# Web (HTTP + WebSocket + SSE). Workers override the command in docker-compose.yml.
# No --proxy-headers: daphne would take the leftmost (client-written) X-Forwarded-For value as the
# client address. The app resolves it by TRUSTED_PROXIES (mejai/proxy.py).
# mejai.server is daphne with request bodies bounded at the socket and a masked access log.
CMD ["python", "-m", "mejai.server", "-b", "0.0.0.0", "-p", "8000", "mejai.asgi:application"]
