# Two set-up commands (see README): `make demo` and `make test`.
# Everything is installed into a local virtual environment ($(VENV)).
#
# Torch: a torch already present in $(VENV) (for example a GPU user's own CUDA build, installed
# first with `$(VENV)/bin/pip install torch ...`) is kept. Otherwise $(TORCH_SPEC) is installed
# BEFORE the project, so that the project's loose `torch>=...` requirement is already satisfied
# and pip never pulls a multi-GB CUDA build on a CPU machine. Extra pip options for that one
# install (for example a CPU wheel index) go in TORCH_PIP_ARGS.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo lint test clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/python -c "import torch" 2>/dev/null; then \
		echo "keeping the torch already in $(VENV): $$($(BIN)/python -c 'import torch; print(torch.__version__)')"; \
	else \
		$(BIN)/pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"; \
	fi
	$(BIN)/pip install -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) all

# Style first (it takes seconds): ruff lint and format, snakefmt on the rule files.
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules

test: lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf results resources logs benchmarks/out .snakemake
