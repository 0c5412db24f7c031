/*
 * credentials.c - SASL credential lookup behind a table of backends
 * chosen by the scheme of a spec ("file:/path"; another backend is one
 * more struct cred_backend and one more line in cred_backends[]), and the
 * Argon2id verification common to all of them.
 *
 * The file backend reads the whole file at open into an immutable sorted
 * table, so lookups need no lock; a reload opens a new table and the
 * server swaps it.  Every line is checked at open: user name, hash prefix,
 * hash syntax and cost (a hostile m= must not make each check allocate
 * gigabytes), duplicates; the first bad line fails the open with its
 * number in err.
 *
 * Must never: log or keep a clear-text password; answer an unknown user
 * faster than a wrong password (an unknown user is verified against a
 * fixed dummy hash); return the hash or tell which of user and password
 * was wrong.
 */
#include "table/credentials.h"
#include "common/log.h"
#include "common/util.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#define CRED_SPEC_MAX		4096
#define CRED_FILE_MAX		(16 * 1024 * 1024)
#define CRED_LINE_MAX		1024
/* Cost bounds accepted in a file: up to libsodium's "sensitive" limits
 * (1 GiB, 4 passes) with some room for the passes, a single lane. */
#define CRED_MAX_KIB		(1024UL * 1024UL)
#define CRED_MAX_PASSES		16UL
#define CRED_MAX_LANES		1UL
/* Unpadded base64: salt of 8 to 48 bytes, tag of exactly 32 bytes. */
#define CRED_B64_CHARS		"ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
				"abcdefghijklmnopqrstuvwxyz0123456789+/"
#define CRED_SALT_B64_MIN	11
#define CRED_SALT_B64_MAX	64
#define CRED_TAG_B64		43

/*
 * Verified in place of a missing user's hash: same algorithm and cost as
 * credentials_hash() output, of a random password that was thrown away.
 */
static const char cred_dummy_hash[] =
    "$argon2id$v=19$m=65536,t=2,p=1$NXVHzl0s/uy5XXDxuRzJuw$"
    "bdmD0DtiURZqZBmAc+EBN3Dz0QiKl0Ein5b+mLP/iqY";

struct cred_backend {
	const char	*scheme;
	/* The backend's handle, or NULL with a reason in err. */
	void		*(*open)(const char *arg, char *err, size_t errlen);
	/* 1 and the user's hash in hash, 0 unknown user, -1 error.  Called
	 * from several worker threads at once. */
	int		 (*lookup)(void *h, const char *user,
			    char hash[crypto_pwhash_STRBYTES]);
	void		 (*close)(void *h);
};

struct credentials {
	const struct cred_backend	*be;
	void				*h;
};

static pthread_once_t	cred_sodium_once = PTHREAD_ONCE_INIT;
static int		cred_sodium_rc = -1;

static void
cred_sodium_init_once(void)
{
	cred_sodium_rc = sodium_init();
}

static void
cred_sodium_init(void)
{
	if (pthread_once(&cred_sodium_once, cred_sodium_init_once) != 0 ||
	    cred_sodium_rc < 0)
		fatalx("credentials: libsodium cannot be initialised");
}

bool
credentials_user_valid(const char *user)
{
	size_t n;

	if (user == NULL)
		return false;
	n = strnlen(user, CREDENTIALS_USER_MAX + 1);
	if (n == 0 || n > CREDENTIALS_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)user[i];
		if (ch <= ' ' || ch == 0x7f || ch == ':')
			return false;
	}
	return true;
}

/* Decimal number at *p, at most max, no sign, no leading zero. */
static bool
cred_parse_num(const char **p, unsigned long max, unsigned long *out)
{
	const char *s = *p;
	unsigned long v = 0;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' &&
	    s[1] <= '9'))
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > max)
			return false;
	}
	*p = s;
	*out = v;
	return true;
}

/* Skip the literal lit at *p.  false if it is not there. */
static bool
cred_skip(const char **p, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*p, lit, n) != 0)
		return false;
	*p += n;
	return true;
}

/*
 * A stored hash we agree to verify: Argon2id version 1.3, cost within
 * bounds, well formed (libsodium decodes it).  NULL or what is wrong.
 */
static const char *
cred_hash_problem(const char *hash)
{
	const char *p = hash;
	unsigned long m, t, l;
	size_t n;

	if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
		return "hash too long";
	if (!cred_skip(&p, "$argon2id$v=19$m="))
		return "not an $argon2id$v=19$ hash (use 'ombud passwd')";
	if (!cred_parse_num(&p, CRED_MAX_KIB, &m) || !cred_skip(&p, ",t=") ||
	    !cred_parse_num(&p, CRED_MAX_PASSES, &t) ||
	    !cred_skip(&p, ",p=") ||
	    !cred_parse_num(&p, CRED_MAX_LANES, &l) || *p++ != '$')
		return "hash cost missing or too high";
	/* Salt, then a 32-byte tag: libsodium would also take other tag
	 * lengths, against which no password ever verifies. */
	n = strspn(p, CRED_B64_CHARS);
	if (n < CRED_SALT_B64_MIN || n > CRED_SALT_B64_MAX || p[n] != '$' ||
	    strspn(p + n + 1, CRED_B64_CHARS) != CRED_TAG_B64 ||
	    p[n + 1 + CRED_TAG_B64] != '\0')
		return "malformed hash";
	if (crypto_pwhash_str_needs_rehash(hash,
	    crypto_pwhash_OPSLIMIT_INTERACTIVE,
	    crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0)
		return "malformed hash";
	return NULL;
}

/* ---- file: backend ---------------------------------------------------- */

struct cred_entry {
	const char	*user;
	const char	*hash;
	unsigned	 line;
};

struct cred_file {
	char			*text;		/* the file, split in place */
	size_t			 textlen;
	struct cred_entry	*entries;	/* sorted by user */
	size_t			 nentries;
};

static void cred_file_close(void *h);

static int
cred_entry_cmp(const void *a, const void *b)
{
	const struct cred_entry *x = a, *y = b;

	return strcmp(x->user, y->user);
}

/* By user, then line: the entries of a user are in file order. */
static int
cred_entry_cmp_line(const void *a, const void *b)
{
	const struct cred_entry *x = a, *y = b;
	int r = strcmp(x->user, y->user);

	if (r != 0)
		return r;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Whole file into memory (NUL-terminated), bounded.  0 or -1 and err. */
static int
cred_file_read(const char *path, struct cred_file *f, char *err,
    size_t errlen)
{
	struct stat st;
	size_t cap = 0;
	ssize_t r;
	int fd = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail;
	}
	if (st.st_size > CRED_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", path,
		    CRED_FILE_MAX);
		goto fail;
	}
	if (st.st_mode & S_IROTH)
		log_warnx("credentials file %s is readable by every user",
		    path);
	cap = (size_t)st.st_size + 1;
	f->text = xmalloc(cap + 1);
	/* The file may grow while we read: never past cap. */
	while (f->textlen < cap) {
		r = read(fd, f->text + f->textlen, cap - f->textlen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		f->textlen += (size_t)r;
	}
	if (f->textlen > (size_t)st.st_size) {
		snprintf(err, errlen, "%s: changed while being read", path);
		goto fail;
	}
	f->text[f->textlen] = '\0';
	close(fd);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* One line, NUL-terminated in place.  0 (entry or nothing) or -1. */
static int
cred_file_line(struct cred_file *f, const char *path, unsigned lineno,
    char *line, size_t len, char *err, size_t errlen)
{
	char *colon, *hash;
	const char *why;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (len > CRED_LINE_MAX) {
		snprintf(err, errlen, "%s:%u: line longer than %d bytes",
		    path, lineno, CRED_LINE_MAX);
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "%s:%u: NUL byte", path, lineno);
		return -1;
	}
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '\0' || *line == '#')
		return 0;
	if ((colon = strchr(line, ':')) == NULL) {
		snprintf(err, errlen, "%s:%u: expected user:hash", path,
		    lineno);
		return -1;
	}
	*colon = '\0';
	hash = colon + 1;
	if (!credentials_user_valid(line)) {
		snprintf(err, errlen, "%s:%u: bad user name (1 to %d bytes, "
		    "no space, control character or ':')", path, lineno,
		    CREDENTIALS_USER_MAX);
		return -1;
	}
	if ((why = cred_hash_problem(hash)) != NULL) {
		snprintf(err, errlen, "%s:%u: user '%s': %s", path, lineno,
		    line, why);
		return -1;
	}
	f->entries = xrealloc(f->entries,
	    (f->nentries + 1) * sizeof(*f->entries));
	f->entries[f->nentries].user = line;
	f->entries[f->nentries].hash = hash;
	f->entries[f->nentries].line = lineno;
	f->nentries++;
	return 0;
}

/* Sort, and name the earliest line that repeats a user.  0 or -1. */
static int
cred_file_index(struct cred_file *f, const char *path, char *err,
    size_t errlen)
{
	const struct cred_entry *dup = NULL;
	size_t i;

	if (f->nentries > 1)
		qsort(f->entries, f->nentries, sizeof(*f->entries),
		    cred_entry_cmp_line);
	for (i = 1; i < f->nentries; i++)
		if (strcmp(f->entries[i - 1].user, f->entries[i].user) == 0 &&
		    (dup == NULL || f->entries[i].line < dup->line))
			dup = &f->entries[i];
	if (dup == NULL)
		return 0;
	/* Sorted by line within a user: dup - 1 is the first occurrence. */
	snprintf(err, errlen, "%s:%u: duplicate user '%s' (first on line %u)",
	    path, dup->line, dup->user, (dup - 1)->line);
	return -1;
}

static void *
cred_file_open(const char *path, char *err, size_t errlen)
{
	struct cred_file *f = xcalloc(1, sizeof(*f));
	char *line, *nl;
	unsigned lineno = 0;

	if (*path == '\0') {
		snprintf(err, errlen, "no file name after 'file:'");
		goto fail;
	}
	if (cred_file_read(path, f, err, errlen) != 0)
		goto fail;
	for (line = f->text; line < f->text + f->textlen; line = nl + 1) {
		lineno++;
		nl = memchr(line, '\n', (size_t)(f->text + f->textlen - line));
		if (nl == NULL)
			nl = f->text + f->textlen;
		*nl = '\0';
		if (cred_file_line(f, path, lineno, line, (size_t)(nl - line),
		    err, errlen) != 0)
			goto fail;
	}
	if (cred_file_index(f, path, err, errlen) != 0)
		goto fail;
	return f;
fail:
	cred_file_close(f);
	return NULL;
}

static int
cred_file_lookup(void *h, const char *user, char hash[crypto_pwhash_STRBYTES])
{
	const struct cred_file *f = h;
	struct cred_entry key = { .user = user };
	const struct cred_entry *e = NULL;

	if (f->nentries > 0)
		e = bsearch(&key, f->entries, f->nentries, sizeof(*f->entries),
		    cred_entry_cmp);
	if (e == NULL)
		return 0;
	if (!strlcpy_ok(hash, e->hash, crypto_pwhash_STRBYTES))
		fatalx("cred_file_lookup: hash checked at open is too long");
	return 1;
}

static void
cred_file_close(void *h)
{
	struct cred_file *f = h;

	if (f == NULL)
		return;
	if (f->text) {
		sodium_memzero(f->text, f->textlen);
		free(f->text);
	}
	free(f->entries);
	free(f);
}

static const struct cred_backend cred_file_backend = {
	.scheme	= "file",
	.open	= cred_file_open,
	.lookup	= cred_file_lookup,
	.close	= cred_file_close,
};

/* ---- the table and the common part ------------------------------------ */

static const struct cred_backend *const cred_backends[] = {
	&cred_file_backend,
};

struct credentials *
credentials_open(const char *spec, char *err, size_t errlen)
{
	struct credentials *c = NULL;
	const struct cred_backend *be = NULL;
	const char *colon;
	size_t n;

	cred_sodium_init();
	if (spec == NULL || strnlen(spec, CRED_SPEC_MAX + 1) > CRED_SPEC_MAX) {
		snprintf(err, errlen, "missing or over-long credentials spec");
		goto fail;
	}
	if ((colon = strchr(spec, ':')) == NULL) {
		snprintf(err, errlen, "'%s' has no scheme (expected "
		    "file:PATH)", spec);
		goto fail;
	}
	n = (size_t)(colon - spec);
	for (size_t i = 0; i < nitems(cred_backends); i++)
		if (strlen(cred_backends[i]->scheme) == n &&
		    strncmp(cred_backends[i]->scheme, spec, n) == 0)
			be = cred_backends[i];
	if (be == NULL) {
		snprintf(err, errlen, "unknown credentials scheme '%.*s' "
		    "(expected file:PATH)", (int)(n > 32 ? 32 : n), spec);
		goto fail;
	}
	c = xcalloc(1, sizeof(*c));
	c->be = be;
	if ((c->h = be->open(colon + 1, err, errlen)) == NULL)
		goto fail;
	return c;
fail:
	free(c);
	return NULL;
}

void
credentials_close(struct credentials *c)
{
	if (c == NULL)
		return;
	c->be->close(c->h);
	free(c);
}

/* found: whether hash is the user's (else the dummy is verified, so
 * that an unknown user costs the same time). */
static int
cred_verify(char hash[crypto_pwhash_STRBYTES], int found,
    const char *password)
{
	size_t plen = strnlen(password, CREDENTIALS_PASS_MAX + 1);
	int rc = -1;

	if (plen > CREDENTIALS_PASS_MAX)
		found = 0;
	if (found == 0 && !strlcpy_ok(hash, cred_dummy_hash,
	    crypto_pwhash_STRBYTES))
		fatalx("credentials: dummy hash");
	errno = 0;
	if (crypto_pwhash_str_verify(hash, password,
	    plen > CREDENTIALS_PASS_MAX ? CREDENTIALS_PASS_MAX : plen) == 0)
		rc = found;
	else if (errno == EINVAL)	/* libsodium's "mismatch" */
		rc = 0;
	else
		log_warn("credentials: cannot verify a password");
	sodium_memzero(hash, crypto_pwhash_STRBYTES);
	return rc;
}

int
credentials_check(struct credentials *c, const char *user,
    const char *password)
{
	char hash[crypto_pwhash_STRBYTES];
	int found = 0;

	if (c == NULL || user == NULL || password == NULL)
		fatalx("credentials_check: NULL argument");
	if (credentials_user_valid(user) && strnlen(password,
	    CREDENTIALS_PASS_MAX + 1) <= CREDENTIALS_PASS_MAX &&
	    (found = c->be->lookup(c->h, user, hash)) < 0) {
		log_warnx("credentials: %s lookup failed", c->be->scheme);
		sodium_memzero(hash, sizeof(hash));
		return -1;
	}
	return cred_verify(hash, found, password);
}

int
credentials_verify_hash(const char *hash, const char *password)
{
	char h[crypto_pwhash_STRBYTES];
	int found = 0;

	cred_sodium_init();
	if (password == NULL)
		fatalx("credentials_verify_hash: NULL password");
	if (hash != NULL && cred_hash_problem(hash) == NULL &&
	    strlcpy_ok(h, hash, sizeof(h)))
		found = 1;
	return cred_verify(h, found, password);
}

int
credentials_hash(const char *password, char *out, size_t outlen)
{
	char hash[crypto_pwhash_STRBYTES];
	size_t plen;
	int rc = -1;

	cred_sodium_init();
	if (password == NULL || out == NULL)
		goto fail;
	plen = strnlen(password, CREDENTIALS_PASS_MAX + 1);
	if (plen == 0 || plen > CREDENTIALS_PASS_MAX)
		goto fail;
	if (crypto_pwhash_str(hash, password, plen,
	    crypto_pwhash_OPSLIMIT_INTERACTIVE,
	    crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		log_warn("credentials: crypto_pwhash_str");
		goto fail;
	}
	if (!strlcpy_ok(out, hash, outlen))
		goto fail;
	rc = 0;
fail:
	sodium_memzero(hash, sizeof(hash));
	return rc;
}
