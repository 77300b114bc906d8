# The two commands: `make demo` and `make test`. Each builds .venv (Python 3.10) on first use and
# reinstalls only when pyproject.toml changes.
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/respike-nm
STAMP := $(VENV)/.respike-installed
DEMO_OUT ?= demo_out
# Real clips for checks (never part of the repository); the data demo uses them when present.
RESPIKE_REALDATA ?= $(wildcard ../shared/realdata)
export RESPIKE_REALDATA

.PHONY: demo test bench lint lock venv clean

$(STAMP): pyproject.toml tools/bootstrap_venv.sh requirements/lock-py310.txt
	@bash tools/bootstrap_venv.sh $(VENV)
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(CLI) demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check respike_nm conversion hw_profiles tests bench

# Refresh the lock file: a fresh venv from the ranges in pyproject.toml, the tests, then its versions.
lock:
	rm -rf .venv-lock
	RESPIKE_NO_LOCK=1 bash tools/bootstrap_venv.sh .venv-lock
	.venv-lock/bin/python -m pytest -q
	{ sed -n '1,3p' requirements/lock-py310.txt; .venv-lock/bin/python -m pip freeze --exclude-editable; } \
		> requirements/lock-py310.txt.new && mv requirements/lock-py310.txt.new requirements/lock-py310.txt
	rm -rf .venv-lock

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
