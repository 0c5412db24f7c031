# ombud - the two commands of the README, and a few more.
#
#   make run    install build dependencies, build, set up ./var, serve
#   make test   install test dependencies, build (ASan+UBSan, and the -O3
#               release build so its warnings fail too), run all tests
#   make bench  release build + bench/accept.sh (ombud vs Postfix)
#   make bench-deliver  release build + bench/deliver.sh (end to end)
#   make bench-dkim  release build + bench/dkim.sh (DKIM signatures/s vs openssl speed)
#   make bench-billing  release build + bench/billing.sh (metering's CPU overhead)
#   make fuzz   libFuzzer builds of every parser (clang), a short run each
#
# Dependencies come from Debian 12's packages; apt-get runs only when a
# package is missing.

BUILD     ?= build
RELEASE   ?= build-release
FUZZBUILD ?= build-fuzz
CONF      ?= etc/ombud.dev.conf
PY        := /usr/bin/python3

BUILD_PKGS := gcc meson ninja-build pkg-config libevent-dev libssl-dev libc-ares-dev \
	libsodium-dev libjansson-dev zlib1g-dev libcmocka-dev openssl libcurl4-openssl-dev \
	libsqlite3-dev libpsl-dev libidn2-dev publicsuffix
TEST_PKGS  := $(BUILD_PKGS) python3 swaks postfix strace dnsmasq-base clang libclang-rt-14-dev \
	sasl2-bin libsasl2-modules libsasl2-modules-db python3-dkim python3-spf python3-yaml python3-dnspython \
	opendkim-tools iproute2

.PHONY: all deps test-deps build release run test bench bench-deliver bench-dkim bench-billing fuzz clean

all: build

define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(BUILD_PKGS))

test-deps:
	$(call install_missing,$(TEST_PKGS))

$(BUILD)/build.ninja:
	meson setup $(BUILD) -Dbuildtype=debug -Db_sanitize=address,undefined

$(RELEASE)/build.ninja:
	meson setup $(RELEASE) -Dbuildtype=release -Db_ndebug=true

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

release: deps $(RELEASE)/build.ninja
	ninja -C $(RELEASE)

# A gateway on 127.0.0.1:2525 with STARTTLS and AUTH (user demo, password
# demo), a self-signed certificate and the spool in ./var.
run: build
	@sh etc/dev-setup.sh $(BUILD)/ombud
	$(BUILD)/ombud config check -c $(CONF)
	exec $(BUILD)/ombud serve -c $(CONF)

test: test-deps build release
	@rc=0; meson test -C $(BUILD) --print-errorlogs --num-processes 2 || rc=$$?; \
	$(PY) tests/summary.py $(BUILD)/meson-logs/testlog.json; exit $$rc

bench: test-deps release
	bench/accept.sh $(RELEASE)/ombud

bench-deliver: test-deps release
	bench/deliver.sh $(RELEASE)/ombud

bench-dkim: deps release
	bench/dkim.sh $(RELEASE)/bench/dkim_bench

bench-billing: test-deps release
	bench/billing.sh $(RELEASE)/ombud

$(FUZZBUILD)/build.ninja:
	CC=clang meson setup $(FUZZBUILD) -Dbuildtype=debug -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false

fuzz: test-deps $(FUZZBUILD)/build.ninja
	ninja -C $(FUZZBUILD)
	@for t in $$(ls tests/fuzz/fuzz_*.c | xargs -n1 basename | sed 's/\.c$$//'); do \
		echo "== $$t"; mkdir -p $(FUZZBUILD)/corpus/$$t; \
		$(FUZZBUILD)/tests/fuzz/$$t -max_total_time=$${FUZZ_SECONDS:-60} \
			$(FUZZBUILD)/corpus/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(RELEASE) $(FUZZBUILD)
