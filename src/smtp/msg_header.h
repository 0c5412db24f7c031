/*
 * msg_header.h - reading the header section of a submitted message, for
 * the sending policy: which addresses the From field names (RFC 5322
 * 3.6.2), so that a company can only send as its own domains.
 *
 * Pure and bounded; fuzzed by tests/fuzz/fuzz_msg_header.c.
 *
 * Must never: read past len; accept a From field it could not parse as
 * if it named no foreign domain (a malformed field is an error, not an
 * empty list).
 */
#ifndef OMBUD_MSG_HEADER_H
#define OMBUD_MSG_HEADER_H

#include <stddef.h>

#define MSG_FROM_MAX		16	/* addresses in one From field */
#define MSG_DOMAIN_MAX		255

enum msg_from_rc {
	MSG_FROM_OK = 0,
	MSG_FROM_NONE,		/* no From field */
	MSG_FROM_MANY,		/* more than one From field */
	MSG_FROM_BAD,		/* cannot be parsed, an address without a
				   domain, too many addresses, too long */
};

/*
 * Find the From field in the header section of content[0..len) (up to
 * the first empty line) and put the domain of each of its addresses,
 * lower-cased, in domains[0..*n).  Display names, quoted strings,
 * comments, groups and obsolete routes are understood.
 */
enum msg_from_rc msg_from_domains(const char *content, size_t len,
    char domains[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1], size_t *n);

#endif
