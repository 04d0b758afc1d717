# a3 build. `make` builds ./a3; `make check` runs the tests; `make demo`
# runs the whole pipeline on the embedded sample; `make sanitize` runs the
# tests under ASan+UBSan; `make bench` prints speed figures.
#
# Sources are found by wildcard: src/<module>/*.c form the library
# (build/liba3.a), src/cli/*.c and ui/*.c the binary, tests/test_*.c one
# test program each (tests/helpers/*.c linked into all of them).

CC      ?= cc
BUILD   ?= build
VERSION := 0.1.0
PKGS    := openblas lapacke libcjson ncursesw libpcre2-8 libutf8proc
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
OPT     ?= -O2 -march=x86-64-v2
CFLAGS  ?= $(OPT) -g
WARN    := -std=c11 -Wall -Wextra -Werror -Wstrict-prototypes -Wshadow -Wno-unused-parameter
CPPFLAGS := -Iinclude -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 $(PKG_CFLAGS) -DA3_VERSION='"$(VERSION)"'
LDLIBS  := $(PKG_LIBS) -lpthread -lm

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
BIN_SRC  := $(wildcard src/cli/*.c) $(wildcard ui/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
HELP_SRC := $(wildcard tests/helpers/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
BIN_OBJ  := $(BIN_SRC:%.c=$(BUILD)/%.o)
HELP_OBJ := $(HELP_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))

# Keep objects of the test and benchmark programs (they are intermediate
# files of the two-step link rules, which make would otherwise delete).
.PRECIOUS: $(BUILD)/%.o
.PHONY: all check test sanitize demo bench bench-scale bench-apply-scale bench-predict bench-seq results setup clean format fuzz
all: a3

a3: $(BUILD)/a3
	@ln -sf $(BUILD)/a3 a3

$(BUILD)/liba3.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/a3: $(BIN_OBJ) $(BUILD)/liba3.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard include/a3/*.h) $(wildcard src/*/*.h) $(wildcard ui/*.h) $(wildcard tests/*.h)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -c -o $@ $<

# The TUI test and benchmark compile ui/*.c into themselves (the library
# holds no curses code), so they follow those sources too.
$(BUILD)/tests/test_tui.o $(BUILD)/tests/bench/bench_tui.o: $(wildcard ui/*.c)
# The option parser's test compiles src/cli/opt.c into itself likewise,
# and the fuzz replay test the fuzz targets.
$(BUILD)/tests/test_cli_opt.o: src/cli/opt.c
$(BUILD)/tests/test_fuzz.o: $(wildcard tests/fuzz/*.c tests/fuzz/*.h)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(HELP_OBJ) $(BUILD)/liba3.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/liba3.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The test command the README and CI use.
check: $(BUILD)/a3 $(TESTS)
	@A3_BIN=$(abspath $(BUILD)/a3) tests/run.sh $(TESTS)
test: check

sanitize:
	$(MAKE) BUILD=build-san CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" check

setup:
	@scripts/setup.sh

# Sets up (installs packages if missing), builds, runs the pipeline.
# The build's compiler lines go to demo-out/build.log, shown only when the
# build fails.
demo:
	@scripts/setup.sh
	@mkdir -p demo-out
	@$(MAKE) --no-print-directory a3 >demo-out/build.log 2>&1 || { cat demo-out/build.log; exit 1; }
	@scripts/demo.sh

bench: $(BUILD)/a3 $(BENCHES)
	@BUILD=$(BUILD) scripts/bench.sh

# docs/PERFORMANCE.md: throughput, memory and solve-time report (issue 7; ~12 min).
bench-scale: a3 $(BENCHES)
	@BUILD=$(BUILD) scripts/bench_scale.py

# docs/PERFORMANCE.md, section "scale": apply of a 7B-shaped model (streaming
# shards, peak heap and mapped pages) and cache opening at 7B/70B
# (scripts/bench_apply_scale.py; ~40 min with an existing model, see --help).
bench-apply-scale: a3
	@BUILD=$(BUILD) scripts/bench_apply_scale.py

# docs/PERFORMANCE.md, section "predict": the exact curves of a 7B-shaped
# layer and the NLL probe's cost in forward passes and CPU seconds
# (scripts/bench_predict.py; 5-20 min, most of it the calibration with Ru).
bench-predict: a3
	@BUILD=$(BUILD) scripts/bench_predict.py

# docs/SEQUENTIAL.md, section "seqcost": time and memory of a sequential
# apply against one-shot and calibrate on LLaMA-1B-shaped layers (minutes).
bench-seq: a3
	scripts/bench_seq.py

# docs/RESULTS.md: stories260K perplexity by method and budget (minutes),
# then the "A3 + quantization" section (GGUF sizes and llama.cpp perplexity),
# then predicted against measured NLL change (scripts/results_predict.py).
results: a3
	scripts/results.py
	@scripts/setup_peers.sh
	scripts/gguf_results.py
	scripts/results_seq.py
	scripts/results_predict.py

# Every loader under libFuzzer + ASan/UBSan (scripts/fuzz.sh; FUZZ_SECONDS
# per target, default 60; FUZZ_TARGETS to pick). Not part of CI: make check
# replays the committed findings and about 18,000 fixed mutants.
fuzz:
	@BUILD=$(BUILD) scripts/fuzz.sh

format:
	clang-format -i $(wildcard src/*/*.c src/*/*.h include/a3/*.h ui/*.c ui/*.h tests/*.c tests/*.h)

clean:
	rm -rf build build-san build-fuzz a3
