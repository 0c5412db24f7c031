/*
 * tmpdir.h - the private /tmp directory each store test works in: made
 * by the group setup, removed with everything in it by the teardown.
 */
#ifndef OMBUD_TEST_TMPDIR_H
#define OMBUD_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

static char dir[] = "/tmp/ombud-test-store-XXXXXX";

static int
tmpdir_make(void)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
tmpdir_remove(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
