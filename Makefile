# `make demo` and `make test` work on a fresh machine with Python 3.11:
# each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.installed-base
TEST := $(VENV)/.installed-test
DEMO_RAW := demo/severstal-steel-defect-detection
PYTEST_ARGS ?=
# Test files run in parallel processes (pytest-xdist), each file in one.
TEST_JOBS ?= 2

.PHONY: demo test install bench clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)

$(BASE): setup.cfg setup.py | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[cpu]"
	touch $@

# The test extras add the references (sklearn, albumentations) and the
# PyTorch peers for parity (torch 2.14.1 + torchvision 0.29.1, a matching
# pair). tensorflow-serving-api declares a dependency on the full
# `tensorflow` package; installed without its dependencies it uses the
# tensorflow-cpu already present instead of pulling a second TensorFlow.
$(TEST): $(BASE)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[cpu,test,parity]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps \
		"tensorflow-serving-api>=2.16"
	touch $@

install: $(BASE)

demo: $(BASE)
	@TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m tfrecords_tools.sample --task steel \
		--out $(DEMO_RAW) --n 64 --size 128x800 --seed 0
	@TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m kaggle_tf.fit \
		--config configs/steel_demo.json --fold 0
	@TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m kaggle_tf.predict \
		--config configs/steel_demo.json

test: $(TEST)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m pytest -n $(TEST_JOBS) --dist loadfile \
		$(PYTEST_ARGS)

bench: $(TEST)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-demo:
	rm -rf demo
