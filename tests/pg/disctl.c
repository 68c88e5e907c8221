/*
 * disctl against a real database: init, append (all or nothing), tail with
 * filters, --from, --follow across processes, exit statuses, and no
 * password in its output. argv[1] is the disctl binary.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *disctl;
static char tmpdir[] = "/tmp/disctl-test.XXXXXX";
static char schema_path[sizeof(tmpdir) + 32];

static const char *schema_json =
	"[{\"type\": \"record\", \"name\": \"AccountOpened\", \"fields\": ["
	"  {\"name\": \"account_id\", \"type\": \"string\","
	"   \"disintegrate.id\": true},"
	"  {\"name\": \"owner\", \"type\": \"string\"}]},"
	" {\"type\": \"record\", \"name\": \"Deposited\", \"fields\": ["
	"  {\"name\": \"account_id\", \"type\": \"string\","
	"   \"disintegrate.id\": true},"
	"  {\"name\": \"amount\", \"type\": \"long\"}]},"
	" {\"type\": \"record\", \"name\": \"BranchOpened\", \"fields\": ["
	"  {\"name\": \"branch_no\", \"type\": \"long\","
	"   \"disintegrate.id\": true},"
	"  {\"name\": \"city\", \"type\": \"string\"}]},"
	" {\"type\": \"record\", \"name\": \"CardIssued\", \"fields\": ["
	"  {\"name\": \"card\", \"type\": {\"type\": \"string\","
	"   \"logicalType\": \"uuid\"}, \"disintegrate.id\": true}]},"
	" {\"type\": \"record\", \"name\": \"Attached\", \"fields\": ["
	"  {\"name\": \"account_id\", \"type\": \"string\","
	"   \"disintegrate.id\": true},"
	"  {\"name\": \"blob\", \"type\": \"bytes\"},"
	"  {\"name\": \"note\", \"type\": \"string\"}]}]";

static const char *sample_events[] = {
	"{\"type\": \"AccountOpened\", \"data\": {\"account_id\": \"A\", "
	"\"owner\": \"Ann\"}}",
	"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"A\", "
	"\"amount\": 10}}",
	"{\"type\": \"AccountOpened\", \"data\": {\"account_id\": \"B\", "
	"\"owner\": \"x'); DROP TABLE event; --\"}}",
	"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"B\", "
	"\"amount\": -5}}",
	"{\"type\": \"BranchOpened\", \"data\": {\"branch_no\": 7, "
	"\"city\": \"Lyon\"}}",
	"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"A\", "
	"\"amount\": 32}}",
};
#define NSAMPLES (sizeof(sample_events) / sizeof(sample_events[0]))

typedef struct run_result {
	int status; /* exit status, or 128 + signal */
	char *out;
	char *err;
} run_result;

static void result_free(run_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	if (n > 0)
		assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static int wait_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* argv[] without disctl itself, NULL terminated. */
static pid_t spawn(const char *const *argv, int in_fd, int out_fd, int err_fd)
{
	const char *full[32];
	size_t n = 0;
	pid_t pid;

	full[n++] = disctl;
	for (; *argv && n < 31; argv++)
		full[n++] = *argv;
	full[n] = NULL;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in_fd, 0);
		dup2(out_fd, 1);
		dup2(err_fd, 2);
		execv(disctl, (char *const *)full);
		_exit(127);
	}
	return pid;
}

/* Runs disctl with `input` on stdin; collects its output. */
static run_result run(const char *input, const char *const *argv)
{
	char in[sizeof(tmpdir) + 16], out[sizeof(tmpdir) + 16],
		err[sizeof(tmpdir) + 16];
	int fin, fout, ferr;
	run_result r;
	pid_t pid;

	snprintf(in, sizeof(in), "%s/stdin", tmpdir);
	snprintf(out, sizeof(out), "%s/stdout", tmpdir);
	snprintf(err, sizeof(err), "%s/stderr", tmpdir);
	write_file(in, input ? input : "");
	fin = open(in, O_RDONLY);
	fout = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ferr = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fin >= 0 && fout >= 0 && ferr >= 0);
	pid = spawn(argv, fin, fout, ferr);
	close(fin);
	close(fout);
	close(ferr);
	r.status = wait_status(pid);
	r.out = slurp(out);
	r.err = slurp(err);
	return r;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A fresh database with the schema migrated by `disctl init`. */
static char *fresh_store(void)
{
	char *db = dt_fresh_db();
	const char *argv[] = {"--db",     db,          "init",
			      "--schema", schema_path, NULL};
	run_result r = run(NULL, argv);

	if (r.status != 0)
		fail_msg("disctl init: status %d: %s", r.status, r.err);
	result_free(&r);
	return db;
}

static char *join_lines(const char *const *lines, size_t n)
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; i < n; i++)
		len += strlen(lines[i]) + 1;
	s = calloc(1, len);
	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		strcat(s, lines[i]);
		strcat(s, "\n");
	}
	return s;
}

static run_result append(const char *db, const char *input)
{
	const char *argv[] = {"--db",     db,          "append",
			      "--schema", schema_path, NULL};

	return run(input, argv);
}

/* tail with extra arguments (NULL terminated, at most 16). */
static run_result tail(const char *db, const char *const *extra)
{
	const char *argv[24] = {"tail", "--db", db, "--schema", schema_path};
	size_t n = 5;

	for (; extra && *extra && n < 23; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	return run(NULL, argv);
}

/*
 * Checks that tail output `out` holds exactly the sample events `want`
 * (indexes into sample_events, in order) with ids `ids`.
 */
static void expect_events(const char *out, const long long *ids,
			  const size_t *want, size_t n)
{
	const char *line = out;

	assert_int_equal(count_lines(out), n);
	for (size_t i = 0; i < n; i++) {
		json_error_t e;
		json_t *got, *exp;
		const char *nl = strchr(line, '\n');

		got = json_loadb(line, (size_t)(nl - line), 0, &e);
		if (!got)
			fail_msg("tail printed bad JSON: %.*s",
				 (int)(nl - line), line);
		exp = json_loads(sample_events[want[i]], 0, &e);
		assert_non_null(exp);
		if (!json_is_integer(json_object_get(got, "id")) ||
		    json_integer_value(json_object_get(got, "id")) !=
			    ids[want[i]] ||
		    !json_equal(json_object_get(got, "type"),
				json_object_get(exp, "type")) ||
		    !json_equal(json_object_get(got, "data"),
				json_object_get(exp, "data")) ||
		    json_object_size(got) != 3)
			fail_msg("tail line %zu: got %.*s, want id %lld %s",
				 i + 1, (int)(nl - line), line, ids[want[i]],
				 sample_events[want[i]]);
		json_decref(got);
		json_decref(exp);
		line = nl + 1;
	}
}

/* Appends the samples; returns their ids through ids[]. */
static void append_samples(const char *db, long long *ids)
{
	char *input = join_lines(sample_events, NSAMPLES);
	run_result r = append(db, input);
	char *p;

	if (r.status != 0)
		fail_msg("append: status %d: %s", r.status, r.err);
	assert_int_equal(count_lines(r.out), NSAMPLES);
	p = r.out;
	for (size_t i = 0; i < NSAMPLES; i++) {
		ids[i] = strtoll(p, &p, 10);
		assert_true(ids[i] > 0);
		if (i > 0)
			assert_true(ids[i] > ids[i - 1]);
	}
	result_free(&r);
	free(input);
}

static void test_init_is_idempotent(void **state)
{
	char *db = fresh_store();
	const char *argv[] = {"init", "--schema", schema_path,
			      "--db", db,         NULL};
	run_result r = run(NULL, argv);

	(void)state;
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "5 event types"));
	result_free(&r);
	free(db);
}

static void test_append_and_tail_round_trip(void **state)
{
	char *db = fresh_store();
	long long ids[NSAMPLES];
	size_t all[NSAMPLES];
	run_result r;

	(void)state;
	append_samples(db, ids);
	for (size_t i = 0; i < NSAMPLES; i++)
		all[i] = i;
	r = tail(db, NULL);
	assert_int_equal(r.status, 0);
	expect_events(r.out, ids, all, NSAMPLES);
	result_free(&r);

	/* tail's output appends again as is (its "id" is ignored). */
	{
		char *again;
		run_result t = tail(db, NULL);

		again = strdup(t.out);
		result_free(&t);
		r = append(db, again);
		assert_int_equal(r.status, 0);
		assert_int_equal(count_lines(r.out), NSAMPLES);
		result_free(&r);
		free(again);
		r = tail(db, NULL);
		assert_int_equal(count_lines(r.out), 2 * NSAMPLES);
		result_free(&r);
	}
	free(db);
}

/* A zero byte is "\u0000" in Avro's JSON: tail prints it so, append
 * takes it back; only the event type may not hold one. */
static void test_zero_bytes_round_trip(void **state)
{
	static const char *line =
		"{\"type\": \"Attached\", \"data\": {\"account_id\": \"A\", "
		"\"blob\": \"\\u0000\\u00ff\", \"note\": \"x\\u0000y\"}}\n";
	char *db = fresh_store(), *printed;
	json_error_t e;
	json_t *want = json_loads(line, JSON_ALLOW_NUL, &e);
	run_result r;

	(void)state;
	assert_non_null(want);
	r = append(db, line);
	if (r.status != 0)
		fail_msg("append: status %d: %s", r.status, r.err);
	result_free(&r);
	r = tail(db, NULL);
	assert_int_equal(r.status, 0);
	printed = strdup(r.out);
	result_free(&r);
	r = append(db, printed);
	if (r.status != 0)
		fail_msg("append of tail's output: status %d: %s", r.status,
			 r.err);
	result_free(&r);
	r = tail(db, NULL);
	assert_int_equal(count_lines(r.out), 2);
	for (const char *p = r.out; *p; p = strchr(p, '\n') + 1) {
		json_t *got = json_loadb(p, (size_t)(strchr(p, '\n') - p),
					 JSON_ALLOW_NUL, &e);

		assert_non_null(got);
		assert_true(json_equal(json_object_get(got, "data"),
				       json_object_get(want, "data")));
		json_decref(got);
	}
	result_free(&r);

	r = append(db, "{\"type\": \"Attached\\u0000x\", \"data\": "
		       "{\"account_id\": \"A\", \"blob\": \"\", "
		       "\"note\": \"\"}}\n");
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "without NUL"));
	result_free(&r);
	r = tail(db, NULL);
	assert_int_equal(count_lines(r.out), 2);
	result_free(&r);
	json_decref(want);
	free(printed);
	free(db);
}

static void test_bad_line_appends_nothing(void **state)
{
	static const char *bad[] = {
		"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"A\"}}",
		"{\"type\": \"Nope\", \"data\": {}}",
		"{\"type\": \"Deposited\"}",
		"[1, 2]",
		"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"A\", "
		"\"amount\": \"ten\"}}",
		"{\"type\": \"Deposited\", \"data\": {\"account_id\": \"A\", "
		"\"amount\": 1}, \"extra\": 1}",
		"not json",
		"{\"type\": \"CardIssued\", \"data\": {\"card\": \"12\"}}",
	};
	char *db = fresh_store();
	run_result r;

	(void)state;
	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		/* Two good lines, a blank one, then the bad one on line 4. */
		char input[1024];

		snprintf(input, sizeof(input), "%s\n%s\n\n%s\n%s\n",
			 sample_events[0], sample_events[1], bad[b],
			 sample_events[2]);
		r = append(db, input);
		if (r.status != 1 || !strstr(r.err, "line 4"))
			fail_msg("bad line %s: status %d, stderr: %s", bad[b],
				 r.status, r.err);
		assert_string_equal(r.out, "");
		result_free(&r);
	}
	r = tail(db, NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "");
	result_free(&r);
	free(db);
}

/* More events than one append statement takes: one transaction still. */
static void test_large_append_is_all_or_nothing(void **state)
{
	enum { N = 2500 };
	char *db = fresh_store();
	char *input = malloc((size_t)N * 100 + 100);
	size_t len = 0;
	run_result r;

	(void)state;
	assert_non_null(input);
	for (int i = 0; i < N; i++)
		len += (size_t)sprintf(input + len,
				       "{\"type\": \"Deposited\", \"data\": "
				       "{\"account_id\": \"L%d\", \"amount\": "
				       "%d}}\n",
				       i % 7, i);
	strcpy(input + len, "{\"type\": \"Deposited\", \"data\": {}}\n");
	r = append(db, input);
	assert_int_equal(r.status, 1);
	assert_non_null(strstr(r.err, "line 2501"));
	result_free(&r);
	r = tail(db, NULL);
	assert_string_equal(r.out, "");
	result_free(&r);

	input[len] = '\0';
	r = append(db, input);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_lines(r.out), N);
	result_free(&r);
	r = tail(db, NULL);
	assert_int_equal(r.status, 0);
	assert_int_equal(count_lines(r.out), N);
	result_free(&r);
	free(input);
	free(db);
}

static void test_tail_filters(void **state)
{
	char *db = fresh_store();
	long long ids[NSAMPLES];
	run_result r;

	(void)state;
	append_samples(db, ids);
	{
		const char *a[] = {"--type", "Deposited", NULL};
		size_t want[] = {1, 3, 5};

		r = tail(db, a);
		assert_int_equal(r.status, 0);
		expect_events(r.out, ids, want, 3);
		result_free(&r);
	}
	{
		const char *a[] = {"--type",  "Deposited",
				   "--type",  "AccountOpened",
				   "--where", "account_id=A",
				   NULL};
		size_t want[] = {0, 1, 5};

		r = tail(db, a);
		assert_int_equal(r.status, 0);
		expect_events(r.out, ids, want, 3);
		result_free(&r);
	}
	{
		/* BranchOpened has no account_id: the equality keeps it. */
		const char *a[] = {"--where", "account_id=B", NULL};
		size_t want[] = {2, 3, 4};

		r = tail(db, a);
		assert_int_equal(r.status, 0);
		expect_events(r.out, ids, want, 3);
		result_free(&r);
	}
	{
		const char *a[] = {"--type", "BranchOpened", "--where",
				   "branch_no=7", NULL};
		size_t want[] = {4};

		r = tail(db, a);
		assert_int_equal(r.status, 0);
		expect_events(r.out, ids, want, 1);
		result_free(&r);
	}
	{
		/* A hostile value is just data. */
		const char *a[] = {"--where",
				   "account_id=x'); DROP TABLE event; --",
				   "--type", "Deposited", NULL};

		r = tail(db, a);
		assert_int_equal(r.status, 0);
		assert_string_equal(r.out, "");
		result_free(&r);
	}
	{
		char from[32];
		const char *a[] = {"--from", from, NULL};
		size_t want[] = {2, 3, 4, 5};

		snprintf(from, sizeof(from), "%lld", ids[1]);
		r = tail(db, a);
		assert_int_equal(r.status, 0);
		expect_events(r.out, ids, want, 4);
		result_free(&r);
	}
	free(db);
}

static void expect_status(const char *db, const char *const *extra, int status,
			  const char *in_err)
{
	run_result r = tail(db, extra);

	if (r.status != status || (in_err && !strstr(r.err, in_err)))
		fail_msg("tail %s %s: status %d (want %d), stderr: %s",
			 extra[0], extra[1] ? extra[1] : "", r.status, status,
			 r.err);
	result_free(&r);
}

static void test_usage_errors(void **state)
{
	char *db = fresh_store();

	(void)state;
	{
		const char *a[] = {"--where", "branch_no=seven", NULL};
		expect_status(db, a, 1, "whole number");
	}
	{
		const char *a[] = {"--where", "card=12", NULL};
		expect_status(db, a, 1, "12");
	}
	{
		const char *a[] = {"--where", "nosuch=1", NULL};
		expect_status(db, a, 1, "nosuch");
	}
	{
		const char *a[] = {"--where", "account_id", NULL};
		expect_status(db, a, 1, "ID=VALUE");
	}
	{
		const char *a[] = {"--type", "Nope", NULL};
		expect_status(db, a, 1, "Nope");
	}
	{
		const char *a[] = {"--from", "banana", NULL};
		expect_status(db, a, 1, "banana");
	}
	{
		const char *a[] = {"--bogus", NULL};
		expect_status(db, a, 1, "--bogus");
	}
	{
		const char *a[] = {"init", NULL};
		run_result r = run(NULL, a);

		assert_int_equal(r.status, 1);
		assert_non_null(strstr(r.err, "--schema"));
		result_free(&r);
	}
	{
		const char *a[] = {"frobnicate", NULL};
		run_result r = run(NULL, a);

		assert_int_equal(r.status, 1);
		result_free(&r);
	}
	{
		const char *a[] = {"--help", NULL};
		run_result r = run(NULL, a);

		assert_int_equal(r.status, 0);
		assert_non_null(strstr(r.out, "tail"));
		result_free(&r);
	}
	free(db);
}

static void test_connection_error_hides_password(void **state)
{
	const char *a[] = {"--db",
			   "host=/nonexistent-dir port=1 "
			   "password=Sekr1t-Pa55 user=nobody",
			   "tail",
			   "--schema",
			   schema_path,
			   NULL};
	run_result r = run(NULL, a);

	(void)state;
	assert_int_equal(r.status, 2);
	assert_null(strstr(r.err, "Sekr1t-Pa55"));
	assert_null(strstr(r.out, "Sekr1t-Pa55"));
	result_free(&r);
}

/* Reads lines from fd until `n` lines arrived or `ms` passed. */
static size_t read_lines(int fd, char *buf, size_t cap, size_t *len, size_t n,
			 int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (count_lines(buf) < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long left;
		ssize_t got;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - ((t.tv_sec - t0.tv_sec) * 1000 +
			     (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		got = read(fd, buf + *len, cap - *len - 1);
		if (got <= 0)
			break;
		*len += (size_t)got;
		buf[*len] = '\0';
	}
	return count_lines(buf);
}

static const char *str_or_empty(const json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : "";
}

/* The last two lines of `out` are deposits of `a1` and `a2` into "C". */
static void expect_last_amounts(const char *out, long long a1, long long a2)
{
	const char *p = out + strlen(out) - 1, *lines[2];
	long long want[2] = {a1, a2};

	for (int i = 1; i >= 0; i--) {
		while (p > out && p[-1] != '\n')
			p--;
		lines[i] = p;
		if (p > out)
			p--;
	}
	for (int i = 0; i < 2; i++) {
		const char *nl = strchr(lines[i], '\n');
		json_error_t e;
		json_t *j =
			json_loadb(lines[i], (size_t)(nl - lines[i]), 0, &e);
		json_t *data = json_object_get(j, "data");

		if (!j ||
		    strcmp(str_or_empty(json_object_get(j, "type")),
			   "Deposited") ||
		    strcmp(str_or_empty(json_object_get(data, "account_id")),
			   "C") ||
		    json_integer_value(json_object_get(data, "amount")) !=
			    want[i])
			fail_msg("unexpected --follow output: %s", out);
		json_decref(j);
	}
}

static pid_t follower = -1;

/* Waits until the follower's connection shows up in pg_stat_activity. */
static void wait_connected(const char *db)
{
	PGconn *c = dt_connect(db);

	for (int i = 0; i < 400; i++) {
		char *n = dt_scalar(c, "SELECT count(*) FROM pg_stat_activity "
				       "WHERE datname = current_database() "
				       "AND pid <> pg_backend_pid()");
		bool up = strcmp(n, "0") != 0;

		free(n);
		if (up)
			break;
		usleep(50 * 1000);
	}
	PQfinish(c);
}

static void test_follow(void **state)
{
	char *db = fresh_store();
	long long ids[NSAMPLES];
	const char *argv[] = {"tail",     "--db",      db,
			      "--schema", schema_path, "--follow",
			      "--type",   "Deposited", NULL};
	char buf[65536] = "";
	size_t len = 0;
	int out[2], devnull;
	pid_t pid;
	run_result r;

	(void)state;
	append_samples(db, ids);
	assert_int_equal(pipe(out), 0);
	devnull = open("/dev/null", O_RDWR);
	assert_true(devnull >= 0);
	pid = follower = spawn(argv, devnull, out[1], 2);
	close(out[1]);
	assert_int_equal(read_lines(out[0], buf, sizeof(buf), &len, 3, 20000),
			 3);

	/* Another process appends; the follower picks it up. */
	r = append(db, "{\"type\": \"Deposited\", \"data\": {\"account_id\": "
		       "\"C\", \"amount\": 1}}\n"
		       "{\"type\": \"BranchOpened\", \"data\": {\"branch_no\": "
		       "8, \"city\": \"Oslo\"}}\n"
		       "{\"type\": \"Deposited\", \"data\": {\"account_id\": "
		       "\"C\", \"amount\": 2}}\n");
	assert_int_equal(r.status, 0);
	result_free(&r);
	if (read_lines(out[0], buf, sizeof(buf), &len, 5, 20000) != 5)
		fail_msg("--follow did not print the new events: %s", buf);
	expect_last_amounts(buf, 1, 2);

	assert_int_equal(kill(pid, SIGTERM), 0);
	follower = -1;
	assert_int_equal(wait_status(pid), 0);
	assert_int_equal(read_lines(out[0], buf, sizeof(buf), &len, 6, 200), 5);
	close(out[0]);
	close(devnull);
	free(db);
}

static void test_follow_sigint_when_idle(void **state)
{
	char *db = fresh_store();
	const char *argv[] = {"tail",      "--db",     db,  "--schema",
			      schema_path, "--follow", NULL};
	pid_t pid;
	int devnull = open("/dev/null", O_RDWR);

	(void)state;
	assert_true(devnull >= 0);
	pid = follower = spawn(argv, devnull, devnull, 2);
	wait_connected(db);
	assert_int_equal(kill(pid, SIGINT), 0);
	follower = -1;
	assert_int_equal(wait_status(pid), 0);
	close(devnull);
	free(db);
}

static void cleanup(void)
{
	static const char *files[] = {"stdin", "stdout", "stderr",
				      "schema.avsc"};
	char path[sizeof(tmpdir) + 16];

	if (follower > 0) {
		kill(follower, SIGKILL);
		waitpid(follower, NULL, 0);
	}

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
		unlink(path);
	}
	rmdir(tmpdir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_is_idempotent),
		cmocka_unit_test(test_append_and_tail_round_trip),
		cmocka_unit_test(test_zero_bytes_round_trip),
		cmocka_unit_test(test_bad_line_appends_nothing),
		cmocka_unit_test(test_large_append_is_all_or_nothing),
		cmocka_unit_test(test_tail_filters),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_connection_error_hides_password),
		cmocka_unit_test(test_follow),
		cmocka_unit_test(test_follow_sigint_when_idle),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH-TO-DISCTL\n", argv[0]);
		return 1;
	}
	disctl = argv[1];
	dt_require_pg();
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	snprintf(schema_path, sizeof(schema_path), "%s/schema.avsc", tmpdir);
	write_file(schema_path, schema_json);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
