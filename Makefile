# capview developer entry points.  `make test` is the README's (and CI's) test command.
PYTHON ?= python3
VENV   ?= .venv

.PHONY: venv test demo testbed-up testbed-down

# The stamp makes `make demo` start at once when the venv is already up to date.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

test:
	bash scripts/testbed.sh install && bash scripts/testbed.sh up && $(MAKE) venv && CAPVIEW_REQUIRE_TESTBED=$${CAPVIEW_REQUIRE_TESTBED:-1} $(VENV)/bin/python -m pytest -q

demo:
	$(MAKE) venv
	$(VENV)/bin/capview demo

testbed-up:
	bash scripts/testbed.sh install && bash scripts/testbed.sh up

testbed-down:
	bash scripts/testbed.sh down
