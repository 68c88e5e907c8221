/*
 * The courses load program (argv[1]) runs for a few seconds with 8
 * threads against a fresh database while `disctl rebuild courses`
 * (argv[2]) rebuilds the read model halfway; it must exit 0 (its own
 * checks: rules held, read model equals the replay). Then this test
 * replays the log itself and compares once more.
 */
#include "testutil.h"
#include "../../examples/courses/courses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *load_path;
static const char *disctl_path;

static void test_load_with_rebuild(void **state)
{
	char *conninfo = dt_fresh_db();
	char err[512];
	dis_schema *s;
	dis_store *st;
	courses_model *m;
	PGconn *c;
	pid_t pid;
	int status;

	(void)state;
	if (!load_path || !disctl_path)
		fail_msg("usage: pg-courses_load COURSES_LOAD DISCTL");
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execl(load_path, load_path, "--db", conninfo, "--seconds", "6",
		      "--threads", "8", "--courses", "12", "--seats", "15",
		      "--students", "120", "--closes", "3", "--rebuild",
		      disctl_path, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(courses_schema(&s, err, sizeof(err)), 0);
	st = dt_store(conninfo, s);
	c = dt_connect(conninfo);
	assert_int_equal(courses_replay(st, &m, err, sizeof(err)), 0);
	assert_int_equal(m->negative_seats, 0);
	assert_int_equal(m->too_many, 0);
	assert_int_equal(m->other_violations, 0);
	assert_true(m->subscriptions > 100);
	assert_true(m->unsubscriptions > 10);
	if (courses_compare_table(m, PQstatus(c) == CONNECTION_OK ? c : NULL,
				  COURSES_PROJECTION, err, sizeof(err)))
		fail_msg("%s", err);
	/* The rebuild ran: generation 2, nothing of it left behind. */
	char *gen = dt_scalar(c, "SELECT generation FROM dis_projection"
				 " WHERE name = 'courses'");
	assert_string_equal(gen, "2");
	free(gen);
	char *left = dt_scalar(c, "SELECT count(*) FROM pg_class WHERE relname"
				  " IN ('courses__rebuild', 'courses__old')");
	assert_string_equal(left, "0");
	free(left);
	courses_model_free(m);
	PQfinish(c);
	dis_store_free(st);
	dis_schema_free(s);
	free(conninfo);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_with_rebuild),
	};

	load_path = argc > 1 ? argv[1] : NULL;
	disctl_path = argc > 2 ? argv[2] : NULL;
	return cmocka_run_group_tests_name("courses load", tests, NULL, NULL);
}
