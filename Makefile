# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install migrate seed clean makemigrations

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/python app.py migrate

seed: migrate
	$(BIN)/python app.py seed

## Embedded mode: SQLite, in-process cache, WeChat sandbox and HIS simulator, demo consortium.
run: $(STAMP)
	$(BIN)/python app.py serve --migrate --seed

## The whole suite. With DATABASE_URL and REDIS_URL set it also runs against PostgreSQL and Redis.
test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) var .pytest_cache

## After changing a model: write the next migration (then commit it with the model).
makemigrations: $(STAMP)
	$(BIN)/tortoise -c db.TORTOISE_ORM makemigrations
