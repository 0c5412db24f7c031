/*
 * cli_user.c - `ombud user add|import|list|set-smtp|mass-update`: the
 * users of each company and how their mail leaves (the company's
 * choice, or a route of their own with its SMTP server and sender
 * address).  mass-update changes many users in one store transaction:
 * a whole company, or the users listed in a CSV file (a header line
 * with an `email` column, RFC 4180 quoting), printing per user what
 * changes (before -> after) and a summary; emails of the file that
 * match no user are listed and nothing is written.  import adds the
 * users of such a file (columns email and, optionally, name).
 *
 * Must never: print a password, even as "before -> after"; write part
 * of a mass update (all or nothing, and nothing when an email is
 * unknown); read more of a CSV file than its bounds (record length,
 * field and row counts).
 */
#include "cli/cli.h"
#include "cli/cli_store.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CSV_RECORD_MAX	8192		/* bytes in one record */
#define CSV_FIELDS_MAX	256		/* fields in one record */
#define CSV_ROWS_MAX	1000000		/* data rows in a file */

static const char user_usage[] =
    "usage: ombud user add --company ID --email E [--name N] [--route R] "
    "[--from ADDR]\n"
    "           [--host H [--port P] [--tls T] [--auth-user U "
    "(--password-stdin|--password-file F)]]\n"
    "       ombud user import --company ID --csv FILE [--route R] "
    "[--from ADDR]\n"
    "       ombud user list [--company ID]\n"
    "       ombud user set-smtp USERID [--route R] [--from ADDR] [--host H] "
    "[--port P] [--tls T]\n"
    "           [--auth-user U] [--password-stdin | --password-file F]\n"
    "       ombud user mass-update (--company ID | --csv FILE [--company "
    "ID])\n"
    "           [--route R] [--from ADDR] [--host H] [--port P] [--tls T] "
    "[--auth-user U]\n"
    "           [--password-stdin | --password-file F] [--dry-run]\n"
    "  R: company|own-server|platform-relay|platform-smarthost; "
    "T: none|opportunistic|required|verify|implicit\n"
    "  every command: [-c FILE] [--json]; changes: [--actor NAME]\n";

#define SET_OPTS	(OPTB(OPT_ROUTE) | OPTB(OPT_FROM) | OPTS_SMTP)

/* One CSV file being read, a record at a time. */
struct csv {
	FILE		*f;
	const char	*path;
	size_t		 line;		/* where the record starts */
	size_t		 next_line;
	struct buf	 rec;		/* the fields, each NUL-ended */
	size_t		 nfields;
	size_t		 off[CSV_FIELDS_MAX + 1];
};

/* Per data row: the values of the columns asked for (NULL when the row
 * is shorter).  0 to go on, else the exit status. */
typedef int (*csv_row_fn)(void *arg, const char *where, const char **vals);

/* The rows of a CSV file: emails and (import) names. */
struct user_rows {
	const struct cli_args	*a;
	bool			 names;		/* a name column */
	char			**email;
	char			**name;
	size_t			 n;
	size_t			 cap;
};

/* What a mass update found, for the report after the store call. */
struct mass_ctx {
	const struct cli_args	*a;
	const struct user_update *upd;
	json_t			*users;		/* --json */
	json_t			*missing;
	struct buf		 out;		/* text, printed at the end */
	size_t			 changed;
	size_t			 nmissing;
};

/* "FILE:LINE: why" on stderr; returns -1. */
static int
csv_error(const struct cli_args *a, const struct csv *c, const char *why)
{
	cli_fail(a, "%s:%zu: %s", c->path, c->line, why);
	return -1;
}

static int
csv_end_field(const struct cli_args *a, struct csv *c)
{
	if (c->nfields == CSV_FIELDS_MAX)
		return csv_error(a, c, "more than 256 fields");
	buf_addc(&c->rec, '\0');
	c->off[++c->nfields] = c->rec.len;
	return 0;
}

/*
 * The next record of c: 1, 0 at the end of the file, or -1 after a
 * message.  RFC 4180: fields separated by ',', records by CRLF (or LF
 * or CR), a field in double quotes may hold ',', line breaks and '""'.
 */
static int
csv_next(const struct cli_args *a, struct csv *c)
{
	enum { F_START, F_PLAIN, F_QUOTED, F_QUOTE } state = F_START;
	bool any = false;
	int ch;

	buf_reset(&c->rec);
	c->nfields = 0;
	c->off[0] = 0;
	c->line = c->next_line;
	for (;;) {
		if ((ch = getc(c->f)) == EOF) {
			if (ferror(c->f))
				return csv_error(a, c, strerror(errno));
			if (state == F_QUOTED)
				return csv_error(a, c, "a quoted field is "
				    "not closed");
			if (!any)
				return 0;
			break;
		}
		any = true;
		if (ch == '\0')
			return csv_error(a, c, "NUL byte");
		if (c->rec.len >= CSV_RECORD_MAX)
			return csv_error(a, c, "record longer than 8192 "
			    "bytes");
		if (state == F_QUOTED) {
			if (ch == '"')
				state = F_QUOTE;
			else {
				if (ch == '\n')
					c->next_line++;
				buf_addc(&c->rec, (char)ch);
			}
			continue;
		}
		if (ch == '"' && state != F_PLAIN) {
			/* an opening quote, or "" inside quotes */
			if (state == F_QUOTE)
				buf_addc(&c->rec, '"');
			state = F_QUOTED;
			continue;
		}
		if (ch == '"')
			return csv_error(a, c, "a quote inside an unquoted "
			    "field");
		if (ch == ',') {
			if (csv_end_field(a, c) != 0)
				return -1;
			state = F_START;
			continue;
		}
		if (ch == '\r' || ch == '\n') {
			if (ch == '\r' && (ch = getc(c->f)) != '\n' &&
			    ch != EOF)
				ungetc(ch, c->f);
			c->next_line++;
			break;
		}
		if (state == F_QUOTE)
			return csv_error(a, c, "text after a closing quote");
		buf_addc(&c->rec, (char)ch);
		state = F_PLAIN;
	}
	return csv_end_field(a, c) != 0 ? -1 : 1;
}

/* Field i of the record, without surrounding spaces and tabs (in
 * place). */
static const char *
csv_field(struct csv *c, size_t i)
{
	char *s = c->rec.data + c->off[i];
	size_t n;

	s += strspn(s, " \t");
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/*
 * Read path: a header line naming the columns (case does not matter),
 * cols[0] required, then fn per data row (blank lines skipped) with the
 * values of cols.  0 or the exit status.
 */
static int
csv_read(const struct cli_args *a, const char *path, const char **cols,
    size_t ncols, csv_row_fn fn, void *arg)
{
	struct csv c = { .path = path, .next_line = 1 };
	size_t idx[4], rows = 0;
	const char *vals[4];
	char where[64];
	int r, rc = 1;

	buf_init(&c.rec);
	if (ncols > nitems(idx))
		goto fail;
	if ((c.f = fopen(path, "re")) == NULL) {
		cli_fail(a, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if ((r = csv_next(a, &c)) <= 0) {
		if (r == 0)
			cli_fail(a, "%s: empty file (a header line with an "
			    "'%s' column is needed)", path, cols[0]);
		goto fail;
	}
	/* a spreadsheet may start the file with a byte order mark */
	if (c.rec.len >= 3 && memcmp(c.rec.data, "\xef\xbb\xbf", 3) == 0) {
		memmove(c.rec.data, c.rec.data + 3, c.rec.len - 3 + 1);
		c.rec.len -= 3;
		for (size_t i = 1; i <= c.nfields; i++)
			c.off[i] -= 3;
	}
	for (size_t k = 0; k < ncols; k++) {
		idx[k] = SIZE_MAX;
		for (size_t i = 0; i < c.nfields; i++)
			if (ascii_strcasecmp(csv_field(&c, i), cols[k]) == 0) {
				idx[k] = i;
				break;
			}
	}
	if (idx[0] == SIZE_MAX) {
		cli_fail(a, "%s:1: no '%s' column in the header line", path,
		    cols[0]);
		goto fail;
	}
	while ((r = csv_next(a, &c)) == 1) {
		if (c.nfields == 1 && *csv_field(&c, 0) == '\0')
			continue;		/* a blank line */
		if (++rows > CSV_ROWS_MAX) {
			cli_fail(a, "%s: more than %d rows", path,
			    CSV_ROWS_MAX);
			goto fail;
		}
		for (size_t k = 0; k < ncols; k++)
			vals[k] = idx[k] < c.nfields ? csv_field(&c, idx[k]) :
			    NULL;
		snprintf(where, sizeof(where), "%.40s:%zu", path, c.line);
		if ((r = fn(arg, where, vals)) != 0) {
			rc = r;
			goto fail;
		}
	}
	if (r == 0)
		rc = 0;
fail:
	if (c.f != NULL)
		fclose(c.f);
	buf_free(&c.rec);
	return rc;
}

static int
user_row(void *arg, const char *where, const char **vals)
{
	struct user_rows *r = arg;
	char opt[80];

	snprintf(opt, sizeof(opt), "%s: email", where);
	if (vals[0] == NULL || !cli_check_email(r->a, opt, vals[0]))
		return 1;
	snprintf(opt, sizeof(opt), "%s: name", where);
	if (r->names && vals[1] != NULL && !cli_check_text(r->a, opt, vals[1],
	    STORE_NAME_MAX, true))
		return 1;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->email = xrealloc(r->email, r->cap * sizeof(*r->email));
		if (r->names)
			r->name = xrealloc(r->name, r->cap * sizeof(*r->name));
	}
	if (r->names)
		r->name[r->n] = xstrdup(vals[1] ? vals[1] : "");
	r->email[r->n++] = xstrdup(vals[0]);
	return 0;
}

/* Read the rows of path (email and, with r->names, name columns).  0 or
 * the exit status. */
static int
user_rows_read(struct user_rows *r, const struct cli_args *a,
    const char *path, bool names)
{
	static const char *cols[] = { "email", "name" };

	r->a = a;
	r->names = names;
	return csv_read(a, path, cols, names ? 2 : 1, user_row, r);
}

static void
user_rows_free(struct user_rows *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->email[i]);
		if (r->names)
			free(r->name[i]);
	}
	free(r->email);
	free(r->name);
}

/* s into b with control characters as spaces, "-" for "". */
static void
user_buf_text(struct buf *b, const char *s)
{
	if (*s == '\0')
		s = "-";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		buf_addc(b, ch < 0x20 || ch == 0x7f ? ' ' : (char)ch);
	}
}

static json_t *
user_json(const struct user *u)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_integer(u->id));
	json_object_set_new(o, "company", cli_json_text(u->company));
	json_object_set_new(o, "email", cli_json_text(u->email));
	json_object_set_new(o, "name", cli_json_text(u->name));
	json_object_set_new(o, "route", json_string(
	    route_kind_name(u->route)));
	json_object_set_new(o, "from", cli_json_text(u->from_address));
	json_object_set_new(o, "smtp", u->route == ROUTE_OWN_SERVER ||
	    u->smtp.host[0] != '\0' ? cli_smtp_json(&u->smtp) : json_null());
	return o;
}

/* One field that differs: into changes (JSON) and line (text). */
static void
user_change(json_t *changes, struct buf *line, const char *field,
    const char *before, const char *after)
{
	json_t *o;

	if (strcmp(before, after) == 0)
		return;
	o = json_object();
	json_object_set_new(o, "before", cli_json_text(before));
	json_object_set_new(o, "after", cli_json_text(after));
	json_object_set_new(changes, field, o);
	if (line == NULL)
		return;
	buf_adds(line, json_object_size(changes) > 1 ? ", " : " ");
	buf_adds(line, field);
	buf_addc(line, ' ');
	user_buf_text(line, before);
	buf_adds(line, " -> ");
	user_buf_text(line, after);
}

/*
 * What differs between b and a: a JSON object of {"field": {"before",
 * "after"}} and, if line is not NULL, "EMAIL (id N): field b -> a, ...".
 * secret: 0 untouched, 1 set, 2 removed (passwords are never shown).
 */
static json_t *
user_diff(const struct user *b, const struct user *a, int secret,
    struct buf *line)
{
	json_t *ch = json_object();
	char pb[8], pa[8];

	if (line != NULL) {
		user_buf_text(line, a->email);
		buf_printf(line, " (id %" PRId64 ", company ", a->id);
		user_buf_text(line, a->company);
		buf_adds(line, "):");
	}
	user_change(ch, line, "route", route_kind_name(b->route),
	    route_kind_name(a->route));
	user_change(ch, line, "from", b->from_address, a->from_address);
	user_change(ch, line, "host", b->smtp.host, a->smtp.host);
	snprintf(pb, sizeof(pb), "%u", (unsigned)b->smtp.port);
	snprintf(pa, sizeof(pa), "%u", (unsigned)a->smtp.port);
	user_change(ch, line, "port", b->smtp.port ? pb : "",
	    a->smtp.port ? pa : "");
	user_change(ch, line, "tls", cli_tls_name(b->smtp.tls),
	    cli_tls_name(a->smtp.tls));
	user_change(ch, line, "auth_user", b->smtp.auth_user,
	    a->smtp.auth_user);
	/* an own server's password goes with its auth user: without one,
	 * there was none to remove */
	if (secret == 2 && b->smtp.auth_user[0] == '\0')
		secret = 0;
	if (secret != 0) {
		json_object_set_new(ch, "password", json_string(secret == 1 ?
		    "changed" : "removed"));
		if (line != NULL)
			buf_printf(line, "%s password %s",
			    json_object_size(ch) > 1 ? "," : "",
			    secret == 1 ? "changed" : "removed");
	}
	if (line != NULL) {
		if (json_object_size(ch) == 0)
			buf_adds(line, " no change");
		buf_addc(line, '\n');
	}
	return ch;
}

/* The rules of a user's settings after a change; 0 or the exit
 * status. */
static int
user_check(const struct cli_args *a, const struct user *u)
{
	if (u->route != ROUTE_OWN_SERVER && (a->given & OPTS_SMTP))
		return cli_usage_error(a, "--host and the other server "
		    "settings belong to the own-server route only");
	if (u->route != ROUTE_OWN_SERVER)
		return 0;
	if (u->smtp.host[0] == '\0')
		return cli_usage_error(a, "the own-server route needs --host");
	if (u->smtp.auth_user[0] != '\0' && u->smtp.secret == NULL)
		return cli_usage_error(a, "--auth-user needs --password-stdin "
		    "or --password-file");
	if (u->smtp.auth_user[0] == '\0' && u->smtp.secret != NULL)
		return cli_usage_error(a, "a password needs --auth-user");
	return 0;
}

/* --route and --from into u (checked); 0 or 1. */
static int
user_route_from(const struct cli_args *a, struct user *u)
{
	if (cli_has(a, OPT_ROUTE) &&
	    !cli_parse_route(a, a->val[OPT_ROUTE], true, &u->route))
		return 1;
	if (cli_has(a, OPT_FROM)) {
		if (a->val[OPT_FROM][0] != '\0' &&
		    !cli_check_email(a, "--from", a->val[OPT_FROM]))
			return 1;
		strlcpy_ok(u->from_address, a->val[OPT_FROM],
		    sizeof(u->from_address));
	}
	return 0;
}

static int
user_add_fail(struct cli_store *cs, const struct cli_args *a, int rc,
    const struct user *u)
{
	if (rc == STORE_NOTFOUND)
		return cli_fail(a, "company '%s' not found", u->company);
	if (rc == STORE_EXISTS)
		return cli_fail(a, "user '%s' already exists in company '%s'",
		    u->email, u->company);
	return cli_store_fail(cs, a, rc, "user '%s'", u->email);
}

static int
user_add(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs = { 0 };
	struct user u;
	unsigned set;
	int rc;

	memset(&u, 0, sizeof(u));
	if ((rc = cli_args_parse(&a, "user add", user_usage, OPTB(OPT_ACTOR) |
	    OPTB(OPT_COMPANY) | OPTB(OPT_EMAIL) | OPTB(OPT_NAME) | SET_OPTS,
	    0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_COMPANY) || !cli_has(&a, OPT_EMAIL))
		return cli_usage_error(&a, "--company and --email are "
		    "required");
	if (!cli_check_id(&a, "--company", a.val[OPT_COMPANY]) ||
	    !cli_check_email(&a, "--email", a.val[OPT_EMAIL]) ||
	    (cli_has(&a, OPT_NAME) && !cli_check_text(&a, "--name",
	    a.val[OPT_NAME], STORE_NAME_MAX, true)))
		return 1;
	strlcpy_ok(u.company, a.val[OPT_COMPANY], sizeof(u.company));
	strlcpy_ok(u.email, a.val[OPT_EMAIL], sizeof(u.email));
	if (cli_has(&a, OPT_NAME))
		strlcpy_ok(u.name, a.val[OPT_NAME], sizeof(u.name));
	u.route = USER_ROUTE_COMPANY;
	if ((rc = user_route_from(&a, &u)) != 0)
		goto fail;
	if (u.route == ROUTE_OWN_SERVER) {
		u.smtp.port = 587;
		u.smtp.tls = RTLS_VERIFY;
	}
	if (u.route != ROUTE_OWN_SERVER && (a.given & OPTS_SMTP)) {
		rc = user_check(&a, &u);
		goto fail;
	}
	if ((rc = cli_smtp_apply(&a, &u.smtp, &set)) != 0 ||
	    (rc = user_check(&a, &u)) != 0)
		goto fail;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	if ((rc = store_user_add(cs.st, &u, cs.actor)) != STORE_OK) {
		rc = user_add_fail(&cs, &a, rc, &u);
		goto fail;
	}
	if (cli_has(&a, OPT_JSON))
		cli_json_print(user_json(&u));
	else
		printf("user %" PRId64 " added: %s (company %s)\n", u.id,
		    u.email, u.company);
	rc = 0;
fail:
	smtp_settings_clear(&u.smtp);
	cli_store_close(&cs);
	return rc;
}

static int
user_import(const char *conf, int argc, char **argv)
{
	struct user_rows r = { 0 };
	struct cli_args a;
	struct cli_store cs = { 0 };
	size_t added = 0, existing = 0;
	struct user u, tmpl;
	json_t *o;
	int rc;

	memset(&tmpl, 0, sizeof(tmpl));
	if ((rc = cli_args_parse(&a, "user import", user_usage,
	    OPTB(OPT_ACTOR) | OPTB(OPT_COMPANY) | OPTB(OPT_CSV) |
	    OPTB(OPT_ROUTE) | OPTB(OPT_FROM), 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_has(&a, OPT_COMPANY) || !cli_has(&a, OPT_CSV))
		return cli_usage_error(&a, "--company and --csv are required");
	if (!cli_check_id(&a, "--company", a.val[OPT_COMPANY]))
		return 1;
	strlcpy_ok(tmpl.company, a.val[OPT_COMPANY], sizeof(tmpl.company));
	tmpl.route = USER_ROUTE_COMPANY;
	if ((rc = user_route_from(&a, &tmpl)) != 0)
		goto fail;
	if (tmpl.route == ROUTE_OWN_SERVER) {
		rc = cli_usage_error(&a, "import cannot set an own server: "
		    "import, then use mass-update");
		goto fail;
	}
	if ((rc = user_rows_read(&r, &a, a.val[OPT_CSV], true)) != 0)
		goto fail;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	for (size_t i = 0; i < r.n; i++) {
		u = tmpl;
		strlcpy_ok(u.email, r.email[i], sizeof(u.email));
		strlcpy_ok(u.name, r.name[i], sizeof(u.name));
		if ((rc = store_user_add(cs.st, &u, cs.actor)) ==
		    STORE_EXISTS) {
			existing++;
			continue;
		}
		if (rc != STORE_OK) {
			rc = user_add_fail(&cs, &a, rc, &u);
			fprintf(stderr, "ombud user import: %zu users added "
			    "before the error\n", added);
			goto fail;
		}
		added++;
	}
	if (cli_has(&a, OPT_JSON)) {
		o = json_object();
		json_object_set_new(o, "company", json_string(tmpl.company));
		json_object_set_new(o, "added", json_integer(
		    (json_int_t)added));
		json_object_set_new(o, "existing", json_integer(
		    (json_int_t)existing));
		cli_json_print(o);
	} else
		printf("%zu users added to company %s, %zu already there\n",
		    added, tmpl.company, existing);
	rc = 0;
fail:
	user_rows_free(&r);
	cli_store_close(&cs);
	return rc;
}

static int
user_list_cb(void *arg, const struct user *u)
{
	json_t *arr = arg;

	if (arr != NULL) {
		json_array_append_new(arr, user_json(u));
		return 0;
	}
	printf("%-8" PRId64 " %-20s ", u->id, u->company);
	cli_put_text(u->email);
	printf("  %s  ", route_kind_name(u->route));
	cli_put_text(u->from_address[0] ? u->from_address : "-");
	printf("  ");
	cli_put_text(u->name[0] ? u->name : "-");
	printf("\n");
	return 0;
}

static int
user_list_run(struct store *st, const char *company, json_t *arr)
{
	return store_user_list(st, company, user_list_cb, arr);
}

static int
user_list(const char *conf, int argc, char **argv)
{
	char header[64];

	snprintf(header, sizeof(header), "%-8s %-20s EMAIL  ROUTE  FROM  NAME",
	    "ID", "COMPANY");
	return cli_list("user list", user_usage, header, true, user_list_run,
	    conf, argc, argv);
}

static int
user_set_smtp(const char *conf, int argc, char **argv)
{
	struct cli_args a;
	struct cli_store cs = { 0 };
	struct user u, before;
	struct buf line;
	int64_t id;
	unsigned set;
	int rc, secret = 0;
	json_t *o, *ch;

	memset(&u, 0, sizeof(u));
	buf_init(&line);
	if ((rc = cli_args_parse(&a, "user set-smtp", user_usage,
	    OPTB(OPT_ACTOR) | SET_OPTS, 1, 1, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	if (!cli_parse_int64(a.pos[0], &id) || id <= 0)
		return cli_fail(&a, "USERID: '%.20s' is not a user id (a "
		    "number, see `ombud user list`)", a.pos[0]);
	if (!(a.given & SET_OPTS))
		return cli_usage_error(&a, "nothing to change");
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	if ((rc = store_user_get(cs.st, id, &u)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "user %" PRId64, id);
		goto fail;
	}
	before = u;
	before.smtp.secret = NULL;	/* only compared, never shown */
	if ((rc = user_route_from(&a, &u)) != 0)
		goto fail;
	if (u.route == ROUTE_OWN_SERVER && before.smtp.host[0] == '\0') {
		/* a new own server: the usual submission port and TLS */
		if (u.smtp.port == 0)
			u.smtp.port = 587;
		u.smtp.tls = RTLS_VERIFY;
	}
	if (u.route != ROUTE_OWN_SERVER) {
		if (a.given & OPTS_SMTP) {
			rc = user_check(&a, &u);
			goto fail;
		}
		/* a server of its own no more: its settings go */
		if (u.smtp.secret != NULL)
			secret = 2;
		smtp_settings_clear(&u.smtp);
		memset(&u.smtp, 0, sizeof(u.smtp));
	}
	if ((rc = cli_smtp_apply(&a, &u.smtp, &set)) != 0 ||
	    (rc = user_check(&a, &u)) != 0)
		goto fail;
	if (set & USER_SET_SECRET)
		secret = u.smtp.secret != NULL ? 1 : 2;
	if ((rc = store_user_set_smtp(cs.st, id, &u, cs.actor)) != STORE_OK) {
		rc = cli_store_fail(&cs, &a, rc, "user %" PRId64, id);
		goto fail;
	}
	ch = user_diff(&before, &u, secret, cli_has(&a, OPT_JSON) ? NULL :
	    &line);
	if (cli_has(&a, OPT_JSON)) {
		o = user_json(&u);
		json_object_set_new(o, "changes", ch);
		cli_json_print(o);
	} else {
		json_decref(ch);
		fwrite(line.data, 1, line.len, stdout);
	}
	rc = 0;
fail:
	buf_free(&line);
	smtp_settings_clear(&u.smtp);
	cli_store_close(&cs);
	return rc;
}

static int
mass_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Sort and drop repeated emails; the count dropped. */
static size_t
mass_unique(struct user_rows *l)
{
	size_t j = 0, n = l->n;

	if (n == 0)
		return 0;
	qsort(l->email, n, sizeof(*l->email), mass_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(l->email[i], l->email[j]) == 0)
			free(l->email[i]);
		else
			l->email[++j] = l->email[i];
	}
	l->n = j + 1;
	return n - l->n;
}

static void
mass_user(void *arg, const struct user *before, const struct user *after)
{
	struct mass_ctx *m = arg;
	int secret = 0;
	json_t *ch, *o;

	if (m->upd->set & USER_SET_SECRET)
		secret = m->upd->smtp.secret != NULL ? 1 : 2;
	ch = user_diff(before, after, secret, m->users ? NULL : &m->out);
	if (json_object_size(ch) > 0)
		m->changed++;
	if (m->users == NULL) {
		json_decref(ch);
		return;
	}
	o = json_object();
	json_object_set_new(o, "id", json_integer(after->id));
	json_object_set_new(o, "company", cli_json_text(after->company));
	json_object_set_new(o, "email", cli_json_text(after->email));
	json_object_set_new(o, "changes", ch);
	json_array_append_new(m->users, o);
}

static void
mass_missing(void *arg, const char *email)
{
	struct mass_ctx *m = arg;

	m->nmissing++;
	if (m->missing != NULL)
		json_array_append_new(m->missing, cli_json_text(email));
	else {
		fprintf(stderr, "ombud user mass-update: not found: ");
		for (; *email; email++)
			fputc((unsigned char)*email < 0x20 ? ' ' : *email,
			    stderr);
		fputc('\n', stderr);
	}
}

static int
user_mass_update(const char *conf, int argc, char **argv)
{
	struct user_rows emails = { 0 };
	struct user_update upd;
	struct user_filter f = { 0 };
	struct mass_ctx m;
	struct cli_args a;
	struct cli_store cs = { 0 };
	struct user tmp;
	bool dry, json;
	size_t matched = 0;
	int64_t t0, ms;
	unsigned set;
	json_t *o;
	int rc, src;

	memset(&upd, 0, sizeof(upd));
	memset(&m, 0, sizeof(m));
	memset(&tmp, 0, sizeof(tmp));
	buf_init(&m.out);
	if ((rc = cli_args_parse(&a, "user mass-update", user_usage,
	    OPTB(OPT_ACTOR) | OPTB(OPT_COMPANY) | OPTB(OPT_CSV) |
	    OPTB(OPT_DRY_RUN) | SET_OPTS, 0, 0, argc, argv)) != 0)
		return rc < 0 ? 0 : rc;
	dry = cli_has(&a, OPT_DRY_RUN);
	json = cli_has(&a, OPT_JSON);
	if (!cli_has(&a, OPT_COMPANY) && !cli_has(&a, OPT_CSV))
		return cli_usage_error(&a, "which users: --company ID, --csv "
		    "FILE or both");
	if (!(a.given & SET_OPTS))
		return cli_usage_error(&a, "nothing to change: give --route, "
		    "--from or server settings");
	if (cli_has(&a, OPT_COMPANY) && !cli_check_id(&a, "--company",
	    a.val[OPT_COMPANY]))
		return 1;
	tmp.route = ROUTE_OWN_SERVER;
	if ((rc = user_route_from(&a, &tmp)) != 0)
		goto fail;
	if (cli_has(&a, OPT_ROUTE) && tmp.route != ROUTE_OWN_SERVER &&
	    (a.given & OPTS_SMTP)) {
		rc = user_check(&a, &tmp);
		goto fail;
	}
	if (cli_has(&a, OPT_CSV)) {
		if ((rc = user_rows_read(&emails, &a, a.val[OPT_CSV],
		    false)) != 0)
			goto fail;
		if (emails.n == 0) {
			rc = cli_fail(&a, "%s: no email addresses",
			    a.val[OPT_CSV]);
			goto fail;
		}
		if (mass_unique(&emails) > 0)
			fprintf(stderr, "ombud user mass-update: emails "
			    "listed more than once are updated once\n");
		f.emails = (const char **)emails.email;
		f.nemails = emails.n;
	}
	f.company = a.val[OPT_COMPANY];
	if (cli_has(&a, OPT_ROUTE)) {
		upd.set |= USER_SET_ROUTE;
		upd.route = tmp.route;
	}
	if (cli_has(&a, OPT_FROM)) {
		upd.set |= USER_SET_FROM;
		upd.from_address = tmp.from_address;
	}
	if ((rc = cli_smtp_apply(&a, &upd.smtp, &set)) != 0)
		goto fail;
	upd.set |= set;
	if ((rc = cli_store_open(&cs, &a, conf)) != 0)
		goto fail;
	m.a = &a;
	m.upd = &upd;
	if (json) {
		m.users = json_array();
		m.missing = json_array();
	}
	t0 = now_msec_mono();
	src = store_user_mass_update(cs.st, &f, &upd, dry, mass_user,
	    mass_missing, &m, &matched, cs.actor);
	ms = now_msec_mono() - t0;
	if (src != STORE_OK && !(src == STORE_NOTFOUND && m.nmissing > 0)) {
		rc = src == STORE_NOTFOUND && f.company ?
		    cli_fail(&a, "company '%s' not found", f.company) :
		    cli_store_fail(&cs, &a, src, "mass update");
		goto fail;
	}
	if (json) {
		o = json_object();
		json_object_set_new(o, "dry_run", json_boolean(dry));
		json_object_set_new(o, "written", json_boolean(!dry &&
		    src == STORE_OK));
		json_object_set_new(o, "matched", json_integer(
		    (json_int_t)matched));
		json_object_set_new(o, "changed", json_integer(
		    (json_int_t)m.changed));
		json_object_set_new(o, "elapsed_ms", json_integer(ms));
		json_object_set(o, "missing", m.missing);
		json_object_set(o, "users", m.users);
		cli_json_print(o);
	} else if ((m.nmissing == 0 || dry) && m.out.len > 0)
		fwrite(m.out.data, 1, m.out.len, stdout);
	if (m.nmissing > 0) {
		rc = cli_fail(&a, "%zu email%s not found: nothing written",
		    m.nmissing, m.nmissing == 1 ? "" : "s");
		goto fail;
	}
	if (!json && dry)
		printf("dry run: %zu users matched, %zu would change; nothing "
		    "written\n", matched, m.changed);
	else if (!json)
		printf("%zu users matched, %zu changed in %.3f s\n", matched,
		    m.changed, (double)ms / 1000.0);
	rc = 0;
fail:
	user_rows_free(&emails);
	smtp_settings_clear(&upd.smtp);
	json_decref(m.users);
	json_decref(m.missing);
	buf_free(&m.out);
	cli_store_close(&cs);
	return rc;
}

int
cli_user(int argc, char **argv)
{
	static const struct cli_verb verbs[] = {
		{ "add", user_add },
		{ "import", user_import },
		{ "list", user_list },
		{ "set-smtp", user_set_smtp },
		{ "mass-update", user_mass_update },
	};

	return cli_dispatch(verbs, nitems(verbs), user_usage, argc, argv);
}
