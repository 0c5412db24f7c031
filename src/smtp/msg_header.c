/*
 * msg_header.c - the From field's domains (see msg_header.h).
 *
 * The field is unfolded into a bounded buffer (CRLF followed by WSP is
 * folding), then tokenised at the top level: quoted strings and (nested)
 * comments are skipped, ',' separates mailboxes, ':' opens a group and
 * ';' closes it, '<' ... '>' holds an angle address (whose obsolete route
 * "@a,@b:" is dropped).  A mailbox without angle brackets is a bare
 * addr-spec.  The domain is what follows the last '@' of the address.
 */
#include "smtp/msg_header.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define MSG_FIELD_MAX	8192	/* unfolded From field, bytes */

/* Take the domain of addr[0..len): lower case, stripped of blanks. */
static bool
msg_take_domain(const char *addr, size_t len, char *out)
{
	const char *at = NULL;
	size_t i, n;

	while (len > 0 && isspace((unsigned char)addr[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*addr))
		addr++, len--;
	for (i = 0; i < len; i++)
		if (addr[i] == '@')
			at = addr + i;
	if (at == NULL || at == addr)
		return false;
	n = len - (size_t)(at + 1 - addr);
	if (n == 0 || n > MSG_DOMAIN_MAX)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)at[1 + i];
		if (isspace(ch) || ch == '<' || ch == '>' || ch == '@' ||
		    ch == ',' || ch == ';' || ch == '"' || ch < 0x21)
			return false;
		out[i] = (char)tolower(ch);
	}
	out[n] = '\0';
	return true;
}

/* Skip a quoted string or comment starting at v[*i]; false if it does
 * not end. */
static bool
msg_skip(const char *v, size_t len, size_t *i)
{
	size_t depth = 0;
	bool quoted = v[*i] == '"';

	for ((*i)++; *i < len; (*i)++) {
		char ch = v[*i];

		if (ch == '\\') {
			(*i)++;
			continue;
		}
		if (quoted) {
			if (ch == '"')
				return true;
		} else if (ch == '(')
			depth++;
		else if (ch == ')') {
			if (depth == 0)
				return true;
			depth--;
		}
	}
	return false;
}

/* Parse the unfolded field value v[0..len). */
static enum msg_from_rc
msg_parse_from(const char *v, size_t len,
    char domains[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1], size_t *n)
{
	char bare[MSG_FIELD_MAX];
	size_t bl = 0, i;
	bool angle_seen = false, in_group = false;

	*n = 0;
	for (i = 0; i <= len; i++) {
		char ch = i < len ? v[i] : ',';

		if (ch == '"' || ch == '(') {
			if (!msg_skip(v, len, &i))
				return MSG_FROM_BAD;
			if (ch == '"' && !angle_seen) {
				/* a quoted local part of a bare addr-spec */
				if (bl >= sizeof(bare) - 1)
					return MSG_FROM_BAD;
				bare[bl++] = 'q';
			}
			continue;
		}
		if (ch == ':' && !angle_seen && !in_group) {
			/* a group's display name ends here */
			in_group = true;
			bl = 0;
			continue;
		}
		if (ch == '<') {
			size_t end = i + 1, start;

			if (angle_seen)
				return MSG_FROM_BAD;
			while (end < len && v[end] != '>')
				end++;
			if (end >= len)
				return MSG_FROM_BAD;
			start = i + 1;
			/* obsolete route: "@a,@b:local@domain" */
			if (start < end && v[start] == '@') {
				while (start < end && v[start] != ':')
					start++;
				if (start == end)
					return MSG_FROM_BAD;
				start++;
			}
			if (*n >= MSG_FROM_MAX)
				return MSG_FROM_BAD;
			if (!msg_take_domain(v + start, end - start,
			    domains[*n]))
				return MSG_FROM_BAD;
			(*n)++;
			angle_seen = true;
			i = end;
			continue;
		}
		if (ch == ',' || ch == ';') {
			if (!angle_seen) {
				size_t k = 0;
				while (k < bl && isspace((unsigned char)
				    bare[k]))
					k++;
				if (k < bl) {
					if (*n >= MSG_FROM_MAX)
						return MSG_FROM_BAD;
					if (!msg_take_domain(bare + k, bl - k,
					    domains[*n]))
						return MSG_FROM_BAD;
					(*n)++;
				}
			}
			if (ch == ';') {
				if (!in_group)
					return MSG_FROM_BAD;
				in_group = false;
			}
			bl = 0;
			angle_seen = false;
			continue;
		}
		if (angle_seen) {
			if (!isspace((unsigned char)ch))
				return MSG_FROM_BAD;	/* text after <> */
			continue;
		}
		if (bl >= sizeof(bare) - 1)
			return MSG_FROM_BAD;
		bare[bl++] = ch;
	}
	if (in_group)
		return MSG_FROM_BAD;
	return *n > 0 ? MSG_FROM_OK : MSG_FROM_BAD;
}

enum msg_from_rc
msg_from_domains(const char *content, size_t len,
    char domains[MSG_FROM_MAX][MSG_DOMAIN_MAX + 1], size_t *n)
{
	char field[MSG_FIELD_MAX];
	size_t i = 0, fl = 0, found = 0;
	enum msg_from_rc rc = MSG_FROM_NONE;

	*n = 0;
	while (i < len) {
		size_t eol = i;

		while (eol < len && content[eol] != '\n')
			eol++;
		/* the empty line ends the header section */
		if (eol == i || (eol == i + 1 && content[i] == '\r'))
			break;
		if (len - i >= 5 && strncasecmp(content + i, "From", 4) == 0) {
			size_t k = i + 4;

			while (k < eol && (content[k] == ' ' ||
			    content[k] == '\t'))
				k++;
			if (k < eol && content[k] == ':') {
				if (++found > 1)
					return MSG_FROM_MANY;
				fl = 0;
				k++;
				/* this line and its continuation lines */
				for (;;) {
					size_t e = eol;
					if (e > k && content[e - 1] == '\r')
						e--;
					if (fl + (e - k) >= sizeof(field))
						return MSG_FROM_BAD;
					memcpy(field + fl, content + k, e - k);
					fl += e - k;
					if (eol + 1 >= len || (content[eol + 1]
					    != ' ' && content[eol + 1] != '\t'))
						break;
					k = eol + 1;
					eol = k;
					while (eol < len && content[eol] !=
					    '\n')
						eol++;
				}
				rc = msg_parse_from(field, fl, domains, n);
				if (rc != MSG_FROM_OK)
					return rc;
			}
		}
		i = eol + 1;
	}
	return found == 0 ? MSG_FROM_NONE : rc;
}
