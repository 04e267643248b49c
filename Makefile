# capview developer entry points.  `make test` is the README's (and CI's) test command.
PYTHON ?= python3
VENV   ?= .venv

.PHONY: venv test demo install testbed-up testbed-down

# The stamp makes `make demo` start at once when the venv is already up to date.
venv: $(VENV)/.installed

# pip's own progress is shown (the first run downloads and installs for ~10 s).
$(VENV)/.installed: pyproject.toml
	@[ -x $(VENV)/bin/python ] || { echo "make: creating $(VENV) (first run only)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing capview and its test tools into $(VENV) ..."
	$(VENV)/bin/pip install -e '.[test]'
	@touch $@
	@echo "make: ready: the CLI is $(VENV)/bin/capview (make install puts capview on PATH with pipx)"

# capview on PATH, outside this checkout: pipx gives it its own venv (a plain `pip install .` works too).
install:
	@command -v pipx >/dev/null 2>&1 || { echo "make install needs pipx (apt install pipx); or run: pip install ."; exit 1; }
	pipx install --force .

test:
	bash scripts/testbed.sh install && bash scripts/testbed.sh up && $(MAKE) venv && CAPVIEW_REQUIRE_TESTBED=$${CAPVIEW_REQUIRE_TESTBED:-1} $(VENV)/bin/python -m pytest -q

demo:
	$(MAKE) venv
	$(VENV)/bin/capview demo

testbed-up:
	bash scripts/testbed.sh install && bash scripts/testbed.sh up

testbed-down:
	bash scripts/testbed.sh down
