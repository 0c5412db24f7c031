/*
 * queue_id.h - queue IDs: unique, time-ordered, safe as file names.
 *
 * 20 lowercase hex digits: 12 of the wall clock in microseconds (ordered,
 * wraps in the year 10889) and 8 of a per-process random value plus a
 * counter, so two processes or a clock that steps back do not collide.
 */
#ifndef OMBUD_QUEUE_ID_H
#define OMBUD_QUEUE_ID_H

#include <stdbool.h>

#define QUEUE_ID_LEN 20

void queue_id_new(char out[QUEUE_ID_LEN + 1]);
bool queue_id_valid(const char *s);	/* exactly the format above */

#endif
