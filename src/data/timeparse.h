/* timeparse.h: event-log timestamps (unix seconds, unix milliseconds,
 * ISO 8601 dates and datetimes) to unix seconds UTC, plus the zone offsets and
 * durations that configs name. Locale- and TZ-independent, no allocation.
 * Deliberately not done: time zone names other than UTC ("Europe/Berlin"),
 * week or ordinal dates, and sub-second results (fractions are truncated). */
#ifndef PT_TIMEPARSE_H
#define PT_TIMEPARSE_H

#include <stddef.h>
#include <stdint.h>

enum time_format { TIME_AUTO = 0, TIME_UNIX = 1, TIME_UNIX_MS = 2, TIME_ISO8601 = 3 };

/* Parses s[0..len) (not necessarily NUL-terminated; never read past len) into
 * [out] *out, unix seconds UTC. Formats:
 *   TIME_UNIX     digits, optionally ".digits" (truncated): "1511544070"
 *   TIME_UNIX_MS  the same in milliseconds, divided down to seconds
 *   TIME_ISO8601  "YYYY-MM-DD" (midnight), "YYYY-MM-DD HH:MM" or
 *                 "YYYY-MM-DDTHH:MM:SS", optionally ".fff..." after the
 *                 seconds (truncated), then optionally a zone, itself
 *                 optionally after one space: "Z", "UTC", "+HH", "+HHMM",
 *                 "+HH:MM" or the same with '-'. Without a zone the time is
 *                 local to default_offset (seconds east of UTC). Fields are
 *                 range-checked (Feb 29 only in leap years); second 60 is
 *                 taken as the next minute's 0.
 *   TIME_AUTO     ISO 8601 if s[4] is '-'; else a unix number, in seconds if
 *                 its integer part has at most 11 digits, else milliseconds.
 * Integer parts longer than 18 digits are rejected. No spaces around s.
 * Returns PT_OK, or PT_EPARSE with no error message set (the caller knows
 * FILE:LINE) and *out untouched. */
int time_parse(const char *s, size_t len, enum time_format fmt, int32_t default_offset, int64_t *out);

/* "+08:00", "-0530", "+08", "UTC", "Z" (NUL-terminated) -> [out] *out,
 * seconds east of UTC; hours at most 14. PT_OK or PT_EPARSE. */
int time_parse_offset(const char *s, int32_t *out);

/* "45s", "30m", "1h", "3d", "2w", or a plain integer (seconds) ->
 * [out] *out > 0 seconds. Zero, fractions and overflow are PT_EPARSE. */
int time_parse_duration(const char *s, int64_t *out);

/* Writes t as "YYYY-MM-DDTHH:MM:SSZ" and a NUL into buf (>= 21 bytes). t is
 * clamped to years 0000..9999, the most that four year digits hold. */
void time_format_iso(int64_t t, char *buf);

#endif
