#!/bin/sh
# dev-setup.sh OMBUD - prepare ./var for `make run`: directories, a
# self-signed TLS certificate and the demo credentials (demo / demo).
# Idempotent: existing files are kept.
set -eu
ombud=$1
mkdir -p var/spool var/run var/tls
if [ ! -f var/tls/key.pem ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 \
		-subj "/CN=ombud.localhost" \
		-keyout var/tls/key.pem -out var/tls/cert.pem 2>/dev/null
	chmod 600 var/tls/key.pem
	echo "dev-setup: made a self-signed certificate in var/tls/"
fi
if [ ! -f var/passwd ]; then
	printf 'demo\n' | "$ombud" passwd demo > var/passwd
	chmod 600 var/passwd
	echo "dev-setup: AUTH user 'demo' with password 'demo' in var/passwd"
fi
