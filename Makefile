# Two commands for users: `make demo` and `make test`. Both create ./.venv when it is missing
# (the pinned set of ../shared/docs/DEPENDENCIES.md, torch and torchvision in the same pip command).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

export DAGSTER_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv lint ui clean-runs

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[orchestration,dev]"
	@rm -f $(VENV)/.installed-* && touch $@

demo: venv
	$(PY) -m orchestration.demo

test: venv
	bash .ci/pytest.sh

lint: venv
	$(VENV)/bin/ruff check mmcl orchestration tests bench

# The UI works on the same instance, workspace and profile as the demo: `make ui MMCL_PROFILE=tiny ...` (the
# demo prints the exact command). Bound to 127.0.0.1: nothing outside this machine reaches it.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
MMCL_WORKSPACE ?= $(CURDIR)/.mmcl_workspace
MMCL_PROFILE ?= demo
UI_PORT ?= 3000
ui: venv
	DAGSTER_HOME=$(DAGSTER_HOME) $(PY) -m orchestration.instance
	DAGSTER_HOME=$(DAGSTER_HOME) MMCL_WORKSPACE=$(MMCL_WORKSPACE) MMCL_PROFILE=$(MMCL_PROFILE) \
	  $(VENV)/bin/dagster dev -h 127.0.0.1 -p $(UI_PORT) -m orchestration.definitions
