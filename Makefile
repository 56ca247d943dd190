# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test`.
VENV := .venv
STAMP := $(VENV)/.augpipe-installed

.PHONY: setup demo test bench show clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c) scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/augpipe demo

test: setup
	$(VENV)/bin/python -m pytest -q tests

bench: setup
	$(VENV)/bin/augpipe bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
