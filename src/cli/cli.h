/* cli.h: shared pieces of the polytask command-line tool. The tool uses
 * only the public API (polytask.h) plus jansson to read the JSON it returns. */
#ifndef PT_CLI_H
#define PT_CLI_H

#include <stdio.h>

#include "polytask.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

int cmd_build(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_recommend(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* "polytask: <pt_errmsg()>" on stderr; returns EXIT_RUNTIME. */
int cli_fail(int rc);
/* "polytask <cmd>: <msg>" and the hint to use --help; returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a non-negative integer option value; returns 0 on success. */
int cli_parse_int(const char *s, long long *out);
/* A finite decimal number; -1 otherwise. */
int cli_parse_double(const char *s, double *out);
/* Prints a "tasks" JSON object as an aligned table. */
void cli_print_tasks(FILE *f, const char *tasks_json);
/* Log lines from the library: warnings and info on stderr. */
void cli_log(int level, const char *msg, void *user);

#endif
