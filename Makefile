# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each creates .venv when it is missing; stamps keep `make` from reinstalling
# what is already there.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
REQ     := requirements
PIN     := -c $(REQ)/constraints.txt
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv test demo clean-venv
venv: $(VENV)/.stamp-project

$(VENV)/.stamp-python:
	$(PYTHON) -m venv $(VENV)
	@touch $@

# torch, torchvision and everything installed with its dependencies.
$(VENV)/.stamp-runtime: $(VENV)/.stamp-python $(REQ)/runtime.txt $(REQ)/constraints.txt
	$(PIP) install $(PIN) -r $(REQ)/runtime.txt
	@touch $@

# mmcv with its compiled ops, built from the sdist against the torch above
# (about 8 minutes on 2 cores the first time; pip's wheel cache makes it fast after).
$(VENV)/.stamp-mmcv: $(VENV)/.stamp-runtime
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install $(PIN) --no-build-isolation --no-deps mmcv
	@touch $@

# Packages whose declared dependencies we must not take (see the file).
$(VENV)/.stamp-nodeps: $(VENV)/.stamp-mmcv $(REQ)/nodeps.txt
	$(PIP) install $(PIN) --no-deps -r $(REQ)/nodeps.txt
	@touch $@

$(VENV)/.stamp-project: $(VENV)/.stamp-nodeps pyproject.toml
	$(PIP) install $(PIN) --no-deps --no-build-isolation -e .
	@touch $@

test: venv
	$(PY) -m pytest

demo: venv
	bash tools/run_transfer.sh demo

clean-venv:
	rm -rf $(VENV)
