# natlab: the two set-up commands are `make demo` (the seed experiments on the real kernel)
# and `make test` (the whole test suite). Both install whatever is missing, idempotently.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := mininet iptables nftables conntrack tcpdump ethtool iproute2 iputils-ping \
                bridge-utils python3-venv bubblewrap tshark
STAMP := $(VENV)/.natlab-installed

.PHONY: demo test lint bench mutation setup deps clean-venv

demo: setup
	$(VENV)/bin/natlab run experiments/specs/seed-dnat-udp.toml experiments/specs/seed-snat-tcp.toml

test: setup
	$(VENV)/bin/ruff check nat topologies experiments tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .
	$(PY) -m pytest -q -n 2 tests

lint: setup
	$(VENV)/bin/ruff check nat topologies experiments tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/deptry .

bench: setup
	$(VENV)/bin/natlab bench

# Mutation testing of the oracle and the port search (issue 20; config in pyproject.toml's
# [tool.mutmut], surviving mutants argued in docs/mutation.md). Not part of `make test`: the
# oracle alone takes about 7 minutes on 2 cores. MUTANTS narrows it, e.g.
#   make mutation MUTANTS='experiments.judging.*'
MUTANTS ?= experiments.judging.* nat.nat_core.*
mutation: setup
	$(PY) -m pip install -q 'mutmut>=3.3,<4'
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children 2 $(foreach m,$(MUTANTS),'$(m)') > mutants.log 2>&1 || { tail -40 mutants.log; exit 1; }
	$(VENV)/bin/mutmut results
	@$(VENV)/bin/mutmut results --all true | awk -F': ' \
	    '{ n[$$2]++ } $$2 != "not checked" { all++ } \
	     END { printf "mutation score: %d of %d mutants killed = %.1f%% (%d survived, %d no tests, %d timeout)\n", \
	           n["killed"], all, all ? 100 * n["killed"] / all : 0, n["survived"], n["no tests"], n["timeout"] }'

setup: deps $(STAMP)

# Debian packages: only what is missing is installed (apt-get update runs only then). tshark
# (the tests read bundles' captures with it) asks whether non-root users may capture; the
# noninteractive frontend takes the default, no.
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The venv comes from Debian's python3 (the only one that sees Debian's mininet package).
$(STAMP): pyproject.toml
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
