# pydarknet — install, test, demo, benchmarks.
# torch is pinned to the CPU build that CI machines carry locally; a looser pin may pull several GB of CUDA wheels.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?= -q

.PHONY: install test fuzz demo demo9000 bench lint

install:
	$(PYTHON) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -q -e ".[test,coco]"

# pytest exits 5 when it collects no test; that is not a failure of the suite.
test: install
	$(PYTHON) -m pytest tests $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

# The long fuzz run of tests/test_fuzz.py (cfg text and weights bytes), FUZZ_EXAMPLES per test.
FUZZ_EXAMPLES ?= 10000
fuzz: install
	PYDARKNET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PYTHON) -m pytest tests/test_fuzz.py -m fuzz $(PYTEST_ARGS) -p no:cacheprovider

demo: install
	$(PYTHON) -m pydarknet.demo

demo9000: install
	$(PYTHON) -m pydarknet.demo9000

bench: install
	bash benchmarks/run_all.sh

lint: install
	$(PYTHON) -m pip install -q ruff
	$(PYTHON) -m ruff check pydarknet tests benchmarks
