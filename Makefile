# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
WHEELS ?= .cache/wheels

.PHONY: demo test bench lint format clean test-servers screenshots soak crash fuzz fuzz-config messages

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/cadence demo

# Three workers on two cores pay: much of the suite waits on local servers and subprocesses.
# The long tests (marked slow) come first and are handed out one at a time, so that no
# worker is left running them alone at the end; `make test PYTEST_WORKERS=0` runs in one.
PYTEST_WORKERS ?= 3
test: $(BIN)/.installed test-servers $(WHEELS)/.done
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --maxschedchunk 1

# The organization benchmark (docs/PERFORMANCE.md): minutes at 1,000 relationships.
# `make bench BENCH_ARGS="--relationships 100 --quiet-ticks 20"` for other sizes.
BENCH_ARGS ?= --relationships 100,1000
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.org $(BENCH_ARGS)

# Real programs some tests start that pip cannot install: Debian's Dovecot for the IMAP
# tests of the caldav provider, OpenLDAP's slapd for the LDAP directory source, Chromium
# for the HTML report, PostgreSQL for the store tests (tests/servers/postgres.sh).
# Installed when missing and possible (root with apt-get); otherwise those tests are
# skipped with the reason.
test-servers:
	@sh tests/servers/postgres.sh
	@command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null 2>&1; }; }; } || \
	  echo "note: dovecot-imapd not installed; the IMAP tests will be skipped"
	@{ command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } && command -v ldapadd >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null 2>&1; }; }; } || \
	  echo "note: slapd not installed; the LDAP directory tests will be skipped"
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
	  echo "note: chromium not installed; the HTML report test will be skipped"
	@# the task queue's tests: Redis and RabbitMQ on 127.0.0.1, started when installed
	@for pkg in redis-server:6379 rabbitmq-server:5672; do \
	  name=$${pkg%%:*}; port=$${pkg##*:}; \
	  $(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', $$port), 1)" 2>/dev/null && continue; \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { command -v $$name >/dev/null 2>&1 || [ -x /usr/sbin/$$name ] || \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$name >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$name >/dev/null 2>&1; }; } && \
	    service $$name start >/dev/null 2>&1; } || \
	  echo "note: $$name not running on port $$port; the task queue's tests will be skipped"; \
	done

# Wheels of Cadence and everything it needs (hatchling to build it, too), fetched once:
# tests/test_docker.py installs from here with --no-index, as the image's build stage
# does from the index, so the test itself never touches the network.
$(WHEELS)/.done: pyproject.toml $(BIN)/.installed
	rm -rf $(WHEELS)
	$(BIN)/pip wheel --quiet --wheel-dir $(WHEELS) . hatchling
	touch $@

# The screenshot of the HTML report in docs/, from the demo workspace, of a German and
# a Japanese agenda, and of the web app's pages (needs Chromium; the Japanese one a CJK
# font, Debian's fonts-noto-cjk).
screenshots: $(BIN)/.installed
	$(BIN)/python -m tests.test_report
	$(BIN)/python -m tests.test_i18n
	$(BIN)/python -m tests.test_web_browser
	$(BIN)/python -m tests.test_web_oidc_browser

# After changing a sentence in a template or in agent/: extract the messages again and
# merge them into every language's catalogue (new ones untranslated: the catalogue check
# in `make test` fails until they are translated). The .po files are compiled when read.
messages: $(BIN)/.installed
	$(BIN)/pybabel extract -F agent/locale/babel.cfg --no-location --sort-output \
	  --project=Cadence --version=0.1.0 --copyright-holder="The Cadence authors" \
	  --msgid-bugs-address=cadence@example.invalid -o agent/locale/messages.pot .
	$(BIN)/pybabel update -i agent/locale/messages.pot -d agent/locale \
	  --ignore-obsolete --width=100

# The long soak: 200 relationships, 20 ticks, 30 % of requests faulted, against the fake
# Google and Graph servers and against Radicale with aiosmtpd (a short one runs in
# `make test`). The Exchange soak alone takes over the 300 s a test is given elsewhere.
soak: $(BIN)/.installed
	SOAK=200x20 $(BIN)/pytest -q -s -n 0 --timeout 3600 tests/test_soak.py tests/test_soak_caldav.py tests/test_soak_exchange.py

# The crash tests at every kill point, over 100 (`make test` kills at a fixed third of
# them): docs/RELIABILITY.md has the figures.
crash: $(BIN)/.installed
	CRASH_ALL=1 $(BIN)/pytest -q -s -n 0 tests/test_crash.py tests/test_crash_google.py tests/test_crash_microsoft.py

# The long property test of the ICS reader: 10,000 mutated corpus calendars (`make test`
# runs 300); docs/RELIABILITY.md has the figures.
ICS_FUZZ_EXAMPLES ?= 10000
fuzz: $(BIN)/.installed
	ICS_FUZZ_EXAMPLES=$(ICS_FUZZ_EXAMPLES) $(BIN)/pytest -q -s -n 0 --timeout 3600 --hypothesis-show-statistics tests/test_ics_fuzz.py

# The long property test of the configuration checks: 10,000 mutated configurations and
# plans per property, a tenth of them ticked (`make test` runs 100 each);
# docs/RELIABILITY.md has the figures.
CONFIG_FUZZ_EXAMPLES ?= 10000
fuzz-config: $(BIN)/.installed
	CONFIG_FUZZ_EXAMPLES=$(CONFIG_FUZZ_EXAMPLES) $(BIN)/pytest -q -s -n 0 --timeout 7200 --hypothesis-show-statistics tests/test_fuzz_config.py

lint: $(BIN)/.installed
	$(BIN)/ruff check agent tests benchmarks
	$(BIN)/ruff format --check agent tests benchmarks
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff format agent tests benchmarks
	$(BIN)/ruff check --fix agent tests benchmarks

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache $(WHEELS)
