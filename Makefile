# pydarknet — install, test, demo, benchmarks.
# torch is pinned to the CPU build that CI machines carry locally; a looser pin may pull several GB of CUDA wheels.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?= -q

# `make test` skips the slow tests (DDP, full-size parity, demo pipelines) on a developer's machine;
# CI (CI=true, set by the CI runner) runs them all. `make test-all` runs them all anywhere.
TEST_MARKS ?= $(if $(CI),not fuzz,not slow and not fuzz)

.PHONY: install test test-all fuzz demo demo-v4 demo9000 bench lint

# An editable install leaves pydarknet's bytecode to the first import, which PYTHONDONTWRITEBYTECODE=1 forbids: each
# command then compiles its ~75 modules again (0.1-0.25 s of a one-image `detector test`). compileall writes them
# once, as pip does for a regular install.
install:
	$(PYTHON) -m pip install -q "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -q -e ".[test,coco]"
	$(PYTHON) -m compileall -q pydarknet

# pytest exits 5 when it collects no test; that is not a failure of the suite. `pydarknet`: its doctests (pytest.ini).
test: install
	$(PYTHON) -m pytest tests pydarknet -m "$(TEST_MARKS)" $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

test-all:
	$(MAKE) test TEST_MARKS="not fuzz"

# The long fuzz run (10,000+ examples per target); the bounded run is part of `make test`.
fuzz: install
	PYDARKNET_FUZZ_EXAMPLES=10000 $(PYTHON) -m pytest tests -m fuzz $(PYTEST_ARGS)

demo: install
	$(PYTHON) -m pydarknet.demo

# yolov4-tiny's layers trained as AlexeyAB's Darknet trains them (-ab -map): about 15 minutes on 2 cores.
demo-v4: install
	$(PYTHON) -m pydarknet.demo --net v4

demo9000: install
	$(PYTHON) -m pydarknet.demo9000

bench: install
	$(PYTHON) -m pip install -q -e ".[bench]"
	bash benchmarks/run_all.sh

lint: install
	$(PYTHON) -m pip install -q ruff
	$(PYTHON) -m ruff check pydarknet tests benchmarks
