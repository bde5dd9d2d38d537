# The README's two commands: `make demo` and `make test`.
PY := .venv/bin/python
export PYTHON := $(CURDIR)/$(PY)
DEMO_DIR := .data/demo
DEMO_DB ?= singleview_demo
DEMO_CUSTOMERS ?= 200

.PHONY: install mongo pubsub kafka beam-java stop demo demo-stream test bench bench-scaling bench-freshness clean

install: .venv/.installed

.venv/.installed: setup.py requirements.txt requirements-test.txt
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt -e '.[test]'
	touch $@

mongo: install
	scripts/mongo.sh start

pubsub:
	scripts/pubsub.sh start

kafka:
	scripts/kafka.sh start

beam-java:
	scripts/beam-java.sh

stop:
	scripts/mongo.sh stop
	scripts/pubsub.sh stop
	scripts/kafka.sh stop

demo: mongo
	scripts/demo.sh

# RATE (messages/s, default 50) and DURATION (s, default 60); stops what it started.
demo-stream: install
	RATE="$(RATE)" DURATION="$(DURATION)" scripts/demo-stream.sh

test: install
	scripts/mongo.sh start
	$(PY) -m pytest -q tests; status=$$?; $(MAKE) --no-print-directory stop; exit $$status

bench: mongo
	$(PY) bench/batch_throughput.py --events 100000

# CUSTOMERS: comma-separated sizes (default 10000,100000); PROFILE=1 samples the full runs with py-spy.
CUSTOMERS ?= 10000,100000
bench-scaling: mongo
	$(PY) bench/batch_scaling.py --customers $(CUSTOMERS) $(if $(PROFILE),--profile)

bench-freshness: install
	$(PY) bench/freshness.py --rate $(or $(RATE),500) --duration $(or $(DURATION),30)

clean: stop
	rm -rf .data .venv
