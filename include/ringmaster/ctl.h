/*
 * ctl.h - `ringmaster ctl`: the control socket's command-line client
 * (docs/control.md).
 */
#ifndef RINGMASTER_CTL_H
#define RINGMASTER_CTL_H

#include "ringmaster/control_proto.h"

#include <stdio.h>

/* Run `ringmaster ctl ARGS...` (argv[0] is "ctl"). Returns the exit status:
 * 0, 1 when the supervisor refused or could not be reached, 2 for bad usage. */
int rm_ctl_main(int argc, char **argv);

/* Write a response the way ctl shows it: tables, or one JSON object. */
void rm_ctl_print_human(FILE *out, const rm_ctlp_response_t *resp);
void rm_ctl_print_json(FILE *out, const rm_ctlp_response_t *resp);

#endif
