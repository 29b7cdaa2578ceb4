# apikey: `make` builds the nginx module and apikeyd, `make test` runs every test,
# `make run` starts the whole system on embedded defaults, `make deps` installs what
# building and testing need (Debian 12 packages).

CXX      ?= g++
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Werror -fPIC -Ishared
LDLIBS_CORE = -llmdb -lcrypto

BUILD   := build
NGX_SRC := /usr/share/nginx/src
NGX_DIR := $(BUILD)/nginx

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

.PHONY: all test unit integration run deps deps-force clean
all: $(MODULE) $(DAEMON) $(LOADCLIENT)

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -c $< -o $@

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
$(NGX_DIR)/objs/Makefile: config
	rm -rf $(NGX_DIR)
	mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_DIR)
	cd $(NGX_DIR) && bash -c '. ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
		--with-cc-opt="-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2" \
		--with-ld-opt="-Wl,-z,relro -Wl,-z,now -fPIC" \
		--add-dynamic-module=$(CURDIR)' > configure.log 2>&1 || \
		{ cat $(NGX_DIR)/configure.log; exit 1; }

$(MODULE): $(NGX_DIR)/objs/Makefile $(CORE_LIB) $(wildcard ngx_module/*.c ngx_module/*.h)
	rm -f $(NGX_DIR)/objs/ngx_http_apikey_module.so
	$(MAKE) -C $(NGX_DIR) -f objs/Makefile modules
	@# A new inode, never an overwrite: running nginx workers have the old file mapped.
	cp $(NGX_DIR)/objs/ngx_http_apikey_module.so $@.tmp && mv -f $@.tmp $@

$(LOADCLIENT): t/tools/loadclient.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -MMD -MP -o $@ $< -lpthread

unit: $(UNIT)
	./$(UNIT) --log_level=test_suite

integration: all
	prove -I t/lib t/

# `test` and `run` install missing packages first, so each is the one command a fresh
# machine needs. The build itself is a sub-make, run once the packages are there.
test: deps
	$(MAKE) all $(UNIT)
	./$(UNIT)
	prove -I t/lib t/

run: deps
	$(MAKE) all
	bash scripts/run.sh

deps:
	bash scripts/install-deps.sh

deps-force:
	bash scripts/install-deps.sh --force

clean:
	rm -rf $(BUILD)

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
