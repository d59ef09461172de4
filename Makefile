# The two commands: `make demo` and `make test`. Everything else is optional.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
PLAIN_BUILD ?= build-plain
JOBS       ?= $(shell nproc)
CMAKE_OPTS ?=

.PHONY: demo test deps build fuzz bench ref clean

deps:
	@sh scripts/deps.sh test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_OPTS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	@sh scripts/demo.sh $(BUILD)/polytask

test: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	@echo "== AddressSanitizer + UndefinedBehaviorSanitizer build =="
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPT_SANITIZE=ON $(CMAKE_OPTS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS)
	@echo "== plain build: no OpenMP, plain-loop GEMM (unit, gradient, reference, fuzz-replay tests) =="
	@cmake -S . -B $(PLAIN_BUILD) -DCMAKE_BUILD_TYPE=Release -DPT_OPENMP=OFF -DPT_BLAS=naive $(CMAKE_OPTS) >/dev/null
	@cmake --build $(PLAIN_BUILD) -j$(JOBS)
	@cd $(PLAIN_BUILD) && ctest --output-on-failure -j$(JOBS) -L 'unit|grad|ref|fuzz'

# libFuzzer targets (clang). Run one: build-fuzz/tests/fuzz/fuzz_csv -max_total_time=300 corpus/
fuzz:
	@sh scripts/deps.sh fuzz
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPT_FUZZ=ON -DPT_TESTS=OFF \
	    -DPT_SANITIZE=ON -DPT_OPENMP=OFF -DPT_BLAS=naive >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS)

bench: build
	@sh scripts/deps.sh bench
	@sh bench/census/run.sh

# Regenerates the PyTorch / scikit-learn reference fixtures under tests/ref.
ref:
	@sh scripts/deps.sh ref
	@for s in tests/ref/gen_*.py; do echo "+ $$s"; /usr/bin/python3 $$s || exit 1; done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(PLAIN_BUILD)
