# mejai — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test install install-dev migrate demo worker mchat-worker mchat-fake bench lint fmt clean chromium

# What running needs (requirements.txt) — `make run`; test and tooling packages (pytest, Playwright,
# ruff…) are installed only by the targets that use them (`make test`, `lint`, `bench`).
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput

# The banner's addresses follow PORT unless PUBLIC_BASE_URL is set (make run PORT=8001 prints :8001);
# only the banner: the server itself keeps PUBLIC_BASE_URL unset (the quickstart then uses the address in use).
demo: migrate
	DEBUG=$${DEBUG:-1} PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://localhost:$(PORT)} $(PY) manage.py demo_setup

## make run: install, migrate, create the demo organization, and serve HTTP + WebSocket + jobs on :8000;
## when a Mattermost bot is configured (admin, or MCHAT_URL + MCHAT_BOT_TOKEN) its worker runs alongside
run: demo
	DEBUG=$${DEBUG:-1} $(PY) manage.py collectstatic --noinput -v 0
	@echo "mejai on http://localhost:$(PORT)  (Ctrl-C to stop)"
	@export DEBUG=$${DEBUG:-1}; \
	if $(PY) manage.py mchat_worker --check; then \
		$(PY) manage.py mchat_worker & MCHAT_PID=$$!; \
		trap 'kill $$MCHAT_PID 2>/dev/null' EXIT INT TERM; \
		echo "mchat: the Mattermost worker runs alongside (pid $$MCHAT_PID)"; \
	fi; \
	$(PY) -m mejai.server -b $(HOST) -p $(PORT) mejai.asgi:application

## make test: the whole suite (embedded defaults, or DATABASE_URL / REDIS_URL when set)
test: install-dev chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# Debian's chromium for the browser tests (Playwright drives it with executable_path),
# and Korean fonts so screenshots show Hangul.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && dpkg -s fonts-nanum >/dev/null 2>&1; } || { \
		if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium fonts-nanum) >/dev/null; \
		else echo "missing: sudo apt-get install chromium fonts-nanum"; exit 1; fi; }

worker: install
	$(VENV)/bin/celery -A mejai worker --loglevel INFO

mchat-worker: install
	$(PY) manage.py mchat_worker

## make mchat-fake: a fake Mattermost server on :8065 to try the bot without one (docs/mchat.md)
mchat-fake: install
	$(PY) -m mchat.fakes.server --port 8065

bench: install-dev
	$(PY) bench/run.py

lint: install-dev
	$(VENV)/bin/ruff check .

fmt: install-dev
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var staticfiles
