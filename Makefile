# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint format clean test-servers soak

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/cadence demo

test: $(BIN)/.installed test-servers
	$(BIN)/pytest -q

# Real servers some tests start that pip cannot install: Debian's Dovecot for the IMAP
# tests of the caldav provider. Installed when missing and possible (root with apt-get);
# otherwise those tests are skipped with the reason.
test-servers:
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1; }; }; } || \
	  echo "note: dovecot-imapd not installed; the IMAP tests will be skipped"

# The long soak: 200 relationships, 20 ticks, 30 % of requests faulted (a short one runs
# in `make test`).
soak: $(BIN)/.installed
	SOAK=200x20 $(BIN)/pytest -q -s tests/test_soak.py

lint: $(BIN)/.installed
	$(BIN)/ruff check agent tests benchmarks
	$(BIN)/ruff format --check agent tests benchmarks
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format agent tests benchmarks
	$(BIN)/ruff check --fix agent tests benchmarks

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
