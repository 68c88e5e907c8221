/*
 * disctl's projection subcommands (cmd_projections.c): `rebuild` and
 * `index`. Each returns disctl's exit status (0 ok, 1 usage or input
 * error, 2 database or connection error, 3 conflict) and prints its own
 * messages. Not part of the library's API.
 */
#ifndef DISCTL_CMD_PROJECTIONS_H
#define DISCTL_CMD_PROJECTIONS_H

/* disctl rebuild --schema FILE PROJECTION */
int disctl_rebuild(const char *db, const char *schema_path, const char *name);
/* disctl index --schema FILE ID */
int disctl_index(const char *db, const char *schema_path, const char *id);

#endif
