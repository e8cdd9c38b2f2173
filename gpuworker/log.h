/* logfmt lines on stderr: ts=... level=... msg="..." key=value ... One write per line. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

/* fields: printf-style "key=value key=value" appended after msg (may be NULL). */
void gw_log(const char *level, const char *msg, const char *fields, ...) __attribute__((format(printf, 3, 4)));

/* s with " and \\ escaped and control characters blanked, for a quoted logfmt value; truncated
 * to fit buf. Returns buf. */
const char *gw_log_esc(char *buf, size_t cap, const char *s);

#endif
