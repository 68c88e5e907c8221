/*
 * disctl's listener subcommands (cmd_listeners.c): `listeners` and `reset`.
 * Each returns disctl's exit status (0 ok, 1 usage or input error, 2
 * database or connection error) and prints its own messages. Not part of
 * the library's API.
 */
#ifndef DISCTL_CMD_LISTENERS_H
#define DISCTL_CMD_LISTENERS_H

/*
 * disctl listeners [--schema FILE]: one line per listener with its
 * checkpoint, the head of the log, the events of its types past the
 * checkpoint and the age of the oldest, its state, attempts, dead letters,
 * when a runtime last wrote its row, and its last error. The schema is
 * optional (schema_path may be NULL).
 */
int disctl_listeners(const char *db, const char *schema_path);

/*
 * disctl reset LISTENER [--to POSITION]: moves the checkpoint to POSITION
 * (TX:ID, or an event id N: continue after that event; default 0, the
 * start) and clears the listener's failure state.
 */
int disctl_reset(const char *db, const char *schema_path, const char *listener,
		 const char *to);

#endif
