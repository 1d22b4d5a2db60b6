# fields-app — two commands do everything on a fresh machine:
#   make demo   set up .venv (system packages included), fit spot's SDF on the CPU, render, export, eval
#   make test   same set-up, then the whole test suite
#   make view   the desktop viewer on spot-sdf (needs a display; see docs/viewer.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSPKGS := libusb-1.0-0 libegl1 libgl1 libgl1-mesa-dri libgomp1 xvfb
DEMO_OUT ?= outputs/spot-sdf

.PHONY: all setup sysdeps demo view test lint bench bench-deps clean

all: demo

sysdeps:
	@bash scripts/sysdeps.sh $(SYSPKGS)

$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory sysdeps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/fields-app train spot-sdf --out $(DEMO_OUT)
	$(BIN)/fields-app export $(DEMO_OUT) --out $(DEMO_OUT)/spot.ply
	$(BIN)/fields-app export $(DEMO_OUT) --out $(DEMO_OUT)/spot.obj
	$(BIN)/fields-app render $(DEMO_OUT) --out $(DEMO_OUT)/turntable.mp4 --frames 36 --size 384x384
	$(BIN)/fields-app eval $(DEMO_OUT) --mesh $(DEMO_OUT)/spot.ply

view: setup
	$(BIN)/fields-app view spot-sdf

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check fields renderer datasets app tests benchmarks

# Peers for benchmarks/ (BENCHMARKS.md): nerfstudio without its dependency tree, plus the few
# modules its encodings import.
bench-deps: setup
	$(BIN)/python -m pip install -q -c constraints.txt PyMCubes embreex jaxtyping rich matplotlib
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps nerfstudio==1.1.5 viser==1.1.1 msgspec==0.22.0 websockets==17.4 zstandard==0.25.0

bench: bench-deps
	$(BIN)/python -m benchmarks.run --suite cpu

clean:
	rm -rf outputs .pytest_cache
