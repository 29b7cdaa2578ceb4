# apikey: `make` builds the nginx module and apikeyd, `make test` runs every test,
# `make run` starts the whole system on embedded defaults, `make deps` installs what
# building and testing need (Debian 12 packages).

CXX      ?= g++
CXXFLAGS ?= -O2 -g
# SANITIZE_FLAGS: instrumentation added to every compile and link (make test-sanitize).
SANITIZE_FLAGS ?=
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -fPIC -Ishared $(SANITIZE_FLAGS)
LDLIBS_CORE = -llmdb -lcrypto

BUILD   := build
NGX_SRC := /usr/share/nginx/src
NGX_DIR := $(BUILD)/nginx
# Extra compiler/linker flags for the module's C files (make test-sanitize sets them).
NGX_CC_EXTRA ?=
NGX_LD_EXTRA ?=

CORE_SRCS   := $(wildcard shared/*.cc)
CORE_OBJS   := $(CORE_SRCS:%.cc=$(BUILD)/%.o)
DAEMON_SRCS := $(wildcard daemon/*.cc)
DAEMON_OBJS := $(DAEMON_SRCS:%.cc=$(BUILD)/%.o)
# Everything of apikeyd but its main(): the unit tests link it too.
DAEMON_LIB_OBJS := $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJS))
TEST_SRCS   := $(wildcard tests/*.cc)
TEST_OBJS   := $(TEST_SRCS:%.cc=$(BUILD)/%.o)

CORE_LIB := $(BUILD)/libapikey_core.a
MODULE   := $(BUILD)/ngx_http_apikey_module.so
DAEMON   := $(BUILD)/apikeyd
UNIT     := $(BUILD)/unit_tests
# The load client of the load tests, t/30 and t/32-34 (Boost.Asio, header-only).
LOADCLIENT := $(BUILD)/tools/loadclient

DEB_PACKAGES := build-essential nginx-core nginx-dev libpcre2-dev zlib1g-dev libssl-dev \
	liblmdb-dev lmdb-utils libyaml-cpp-dev libboost-dev libboost-test-dev \
	nlohmann-json3-dev libjson-pp-perl curl openssl

.PHONY: all test unit unit-bin integration run deps deps-force clean
all: $(MODULE) $(DAEMON) $(LOADCLIENT)

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

# The core's symbols stay inside the module: its calls between files go direct instead of
# through the PLT, and a file's own functions may be inlined (no interposition).
$(CORE_OBJS): CXXFLAGS += -fvisibility=hidden

$(CORE_LIB): $(CORE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(DAEMON): $(DAEMON_OBJS) $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $(DAEMON_OBJS) $(CORE_LIB) -lyaml-cpp -lpthread -lssl $(LDLIBS_CORE)

$(UNIT): $(TEST_OBJS) $(DAEMON_LIB_OBJS) $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $(TEST_OBJS) $(DAEMON_LIB_OBJS) $(CORE_LIB) \
		-lboost_unit_test_framework -lyaml-cpp -lpthread -lssl $(LDLIBS_CORE)

$(BUILD)/tests/%.o: CXXFLAGS += -DBOOST_TEST_DYN_LINK

# The module is built by nginx's own build system, from a copy of Debian's nginx source
# configured with the installed nginx's flags (conf_flags), so the installed binary
# accepts the module's signature.
# APIKEY_CORE_LIB points the module's link at this build's core; NGX_CC_EXTRA and
# NGX_LD_EXTRA add instrumentation (the configure test programs then run with ASan, leak
# checks off, so every feature is detected as for the installed nginx).
$(NGX_DIR)/objs/Makefile: config
	rm -rf $(NGX_DIR)
	mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_DIR)
	cd $(NGX_DIR) && APIKEY_CORE_LIB=$(CURDIR)/$(CORE_LIB) ASAN_OPTIONS=detect_leaks=0 bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
		--with-cc-opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2 $(NGX_CC_EXTRA)" \
		--with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC $(NGX_LD_EXTRA)" \
		--add-dynamic-module=$(CURDIR)' > configure.log 2>&1 || \
		{ cat $(NGX_DIR)/configure.log; exit 1; }

$(MODULE): $(NGX_DIR)/objs/Makefile $(CORE_LIB) $(wildcard ngx_module/*.c ngx_module/*.h)
	rm -f $(NGX_DIR)/objs/ngx_http_apikey_module.so
	$(MAKE) -C $(NGX_DIR) -f objs/Makefile modules
	@# A new inode, never an overwrite: running nginx workers have the old file mapped.
	cp $(NGX_DIR)/objs/ngx_http_apikey_module.so $@.tmp && mv -f $@.tmp $@

unit-bin: $(UNIT)

$(LOADCLIENT): t/tools/loadclient.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -o $@ $< -lpthread

unit: $(UNIT)
	./$(UNIT) --log_level=test_suite

integration: all
	bash scripts/prove.sh -I t/lib t/

# `test` and `run` install missing packages first, so each is the one command a fresh
# machine needs. The build itself is a sub-make, run once the packages are there.
test: deps
	$(MAKE) all $(UNIT) bench-bins
	./$(UNIT)
	bash scripts/prove.sh -I t/lib t/

run: deps
	$(MAKE) all
	bash scripts/run.sh

deps:
	bash scripts/install-deps.sh

deps-force:
	bash scripts/install-deps.sh --force

clean:
	rm -rf $(BUILD) build-sanitize build-fuzz

-include $(CORE_OBJS:.o=.d) $(DAEMON_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(LOADCLIENT).d

# ---- make bench (bench/, docs/BENCHMARKS.md) --------------------------------------------
# Builds the bench tools, then runs bench/run.sh: a generated 1M-key snapshot, Google
# Benchmark of the decision, wrk against bare nginx vs nginx + module, start time, memory,
# revoke -> 401 and key creates through apikeyd. Results: docs/BENCHMARKS.md.
BENCH_BINS := $(BUILD)/bench/gen_snapshot $(BUILD)/bench/decision_bench $(BUILD)/bench/revoke_probe \
	$(BUILD)/bench/control_probe

$(BUILD)/bench/gen_snapshot: $(BUILD)/bench/gen_snapshot.o $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $< $(CORE_LIB) $(LDLIBS_CORE)

$(BUILD)/bench/revoke_probe: $(BUILD)/bench/revoke_probe.o $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $< $(CORE_LIB) $(LDLIBS_CORE)

$(BUILD)/bench/control_probe: $(BUILD)/bench/control_probe.o $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $< $(CORE_LIB) -lpthread $(LDLIBS_CORE)

$(BUILD)/bench/decision_bench: $(BUILD)/bench/decision_bench.o $(CORE_LIB)
	$(CXX) $(CXXFLAGS) -o $@ $< $(CORE_LIB) -lbenchmark -lpthread $(LDLIBS_CORE)

.PHONY: bench bench-bins
bench-bins: $(BENCH_BINS)

bench: deps
	$(MAKE) all bench-bins
	bash bench/run.sh

-include $(BENCH_BINS:%=%.d)

# ---- make test-sanitize (docs/RELIABILITY.md "Sanitizers") -------------------------------
# The module, apikeyd and the unit tests built with ASan + UBSan (g++) into build-sanitize/
# (its own nginx objs), then every unit and integration test run on that build by
# scripts/test-sanitize.sh; any sanitizer report fails the run.
SAN_BUILD := build-sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# gcc 12 with ASan reports maybe-uninitialized inside libstdc++'s <regex> (a known false
# positive of the instrumented code); -Werror stays on for everything else.
SAN_NO_WARN := -Wno-maybe-uninitialized

.PHONY: sanitize-build test-sanitize
sanitize-build:
	CXXFLAGS="-O1 -g" $(MAKE) BUILD=$(SAN_BUILD) SANITIZE_FLAGS="$(SAN_FLAGS) $(SAN_NO_WARN)" \
		NGX_CC_EXTRA="$(SAN_FLAGS)" NGX_LD_EXTRA="$(SAN_FLAGS)" all unit-bin

test-sanitize: deps
	$(MAKE) sanitize-build
	bash scripts/test-sanitize.sh $(SAN_BUILD)

# ---- make fuzz, make fuzz-regress (docs/RELIABILITY.md "Fuzzing") -----------------------
# libFuzzer targets (fuzz/fuzz_*.cc, one per parser of outside input), built with clang-14
# + ASan + UBSan into build-fuzz/ (the code under test is compiled again there with the
# fuzzer's coverage instrumentation). `make fuzz` runs each for FUZZ_SECONDS from its seed
# corpus (fuzz/corpus/<target>/) and fails on any crash; `make fuzz-regress` only replays
# the committed corpora (regression inputs included), in seconds.
FUZZ_BUILD   := build-fuzz
FUZZ_CXX     ?= clang++-14
FUZZ_FLAGS   := -O1 -g -std=c++17 -Wall -Wextra -fPIC -Ishared -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 60
# A fixed seed makes a run from a clean build-fuzz/ repeatable (CI's run can be replayed
# here, longer); FUZZ_SEED=0 draws a new one each run, for exploring.
FUZZ_SEED    ?= 1
FUZZ_TARGETS := $(patsubst fuzz/%.cc,%,$(wildcard fuzz/fuzz_*.cc))
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJS := $(CORE_SRCS:%.cc=$(FUZZ_BUILD)/%.o) \
	$(filter-out $(FUZZ_BUILD)/daemon/main.o,$(DAEMON_SRCS:%.cc=$(FUZZ_BUILD)/%.o))

$(FUZZ_BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/fuzz/fuzz_%.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJS) \
		-lyaml-cpp -lpthread -lssl $(LDLIBS_CORE)

# Objects kept between runs (make would delete them as intermediates).
.SECONDARY: $(FUZZ_LIB_OBJS) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/%.o)
.PHONY: fuzz-bins fuzz fuzz-regress
fuzz-bins: $(FUZZ_BINS)

fuzz: deps
	$(MAKE) fuzz-bins
	FUZZ_SEED=$(FUZZ_SEED) bash scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-regress: deps
	$(MAKE) fuzz-bins
	bash scripts/fuzz.sh regress 0 $(FUZZ_TARGETS)

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/%.d)
