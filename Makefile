# The two commands: `make demo` and `make test`. Both install what is missing first.
.PHONY: setup demo test lint typecheck unit bench clean

VENV := .venv/bin
DEMO_SECONDS ?=
DEMO_DIR ?=

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/vaka-central demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS)) $(if $(DEMO_DIR),--dir $(DEMO_DIR))

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck: setup
	$(VENV)/mypy

unit: setup
	$(VENV)/pytest -q

test: lint typecheck unit

bench: setup
	$(VENV)/python bench/fleet.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .vaka-demo
