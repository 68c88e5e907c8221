/* The courses example: states, decisions, read model, policy, replay. */
#include "courses.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int courses_schema(dis_schema **out, char *errbuf, size_t errlen)
{
	return dis_schema_parse(courses_avsc, out, errbuf, errlen);
}

/* Adds a filter of `stream` with the given string equalities (id, value
 * pairs; a NULL id ends them). */
static int stream_filter(dis_query *q, const char *stream, const char *id1,
			 const char *v1, const char *id2, const char *v2)
{
	dis_filter *f;
	int rc;

	if ((rc = dis_query_add_filter(q, &f)))
		return rc;
	dis_filter_stream(f, stream);
	if (id1)
		dis_filter_where_string(f, id1, v1);
	if (id2)
		dis_filter_where_string(f, id2, v2);
	return dis_query_check(q);
}

static const char *get_str(const dis_event *ev, const char *field)
{
	const char *s = "";

	dis_event_get_string(ev, field, &s);
	return s;
}

static bool is(const dis_event *ev, const char *type)
{
	return strcmp(dis_event_type(ev), type) == 0;
}

/* A list of ids a state owns. */
typedef struct idlist {
	char **v;
	size_t n;
} idlist;

static int idlist_add(idlist *l, const char *id)
{
	char **v = realloc(l->v, (l->n + 1) * sizeof(*v));

	if (!v)
		return DIS_ENOMEM;
	l->v = v;
	if (!(v[l->n] = strdup(id)))
		return DIS_ENOMEM;
	l->n++;
	return 0;
}

static bool idlist_has(const idlist *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], id) == 0)
			return true;
	return false;
}

static void idlist_remove(idlist *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], id) == 0) {
			free(l->v[i]);
			l->v[i] = l->v[--l->n];
			return;
		}
}

static void idlist_free(idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ---- states ---- */

/* A course's life: created, renamed, closed (the Course stream). */
struct course {
	const char *course_id;
	bool created;
	bool closed;
};

static int course_query(const void *state, dis_query *q)
{
	const struct course *c = state;

	return stream_filter(q, "Course", "course_id", c->course_id, NULL,
			     NULL);
}

static int course_mutate(void *state, const dis_event *ev)
{
	struct course *c = state;

	if (is(ev, "CourseCreated"))
		c->created = true;
	else if (is(ev, "CourseClosed"))
		c->closed = true;
	return 0;
}

static const dis_state_def course_def = {
	.name = "Course",
	.size = sizeof(struct course),
	.query = course_query,
	.mutate = course_mutate,
};

/* A course's seats (the CourseSubscription stream). */
struct course_seats {
	const char *course_id;
	bool created;
	bool closed;
	int32_t available;
};

static int seats_query(const void *state, dis_query *q)
{
	const struct course_seats *c = state;

	return stream_filter(q, "CourseSubscription", "course_id", c->course_id,
			     NULL, NULL);
}

static int seats_mutate(void *state, const dis_event *ev)
{
	struct course_seats *c = state;
	int32_t seats = 0;

	if (is(ev, "CourseCreated")) {
		dis_event_get_int(ev, "seats", &seats);
		c->created = true;
		c->available = seats;
	} else if (is(ev, "CourseClosed")) {
		c->closed = true;
	} else if (is(ev, "StudentSubscribed")) {
		c->available--;
	} else if (is(ev, "StudentUnsubscribed")) {
		c->available++;
	}
	return 0;
}

static const dis_state_def seats_def = {
	.name = "CourseSeats",
	.size = sizeof(struct course_seats),
	.query = seats_query,
	.mutate = seats_mutate,
};

/* A student's registration (the Student stream). */
struct student {
	const char *student_id;
	bool registered;
};

static int student_query(const void *state, dis_query *q)
{
	const struct student *s = state;

	return stream_filter(q, "Student", "student_id", s->student_id, NULL,
			     NULL);
}

static int student_mutate(void *state, const dis_event *ev)
{
	struct student *s = state;

	if (is(ev, "StudentRegistered"))
		s->registered = true;
	return 0;
}

static const dis_state_def student_def = {
	.name = "Student",
	.size = sizeof(struct student),
	.query = student_query,
	.mutate = student_mutate,
};

/* A student's courses (the StudentSubscription stream). */
struct student_courses {
	const char *student_id;
	bool registered;
	idlist courses;
};

static int student_courses_query(const void *state, dis_query *q)
{
	const struct student_courses *s = state;

	return stream_filter(q, "StudentSubscription", "student_id",
			     s->student_id, NULL, NULL);
}

static int student_courses_mutate(void *state, const dis_event *ev)
{
	struct student_courses *s = state;

	if (is(ev, "StudentRegistered"))
		s->registered = true;
	else if (is(ev, "StudentSubscribed"))
		return idlist_add(&s->courses, get_str(ev, "course_id"));
	else if (is(ev, "StudentUnsubscribed"))
		idlist_remove(&s->courses, get_str(ev, "course_id"));
	return 0;
}

static void student_courses_destroy(void *state)
{
	idlist_free(&((struct student_courses *)state)->courses);
}

static const dis_state_def student_courses_def = {
	.name = "StudentCourses",
	.size = sizeof(struct student_courses),
	.query = student_courses_query,
	.mutate = student_courses_mutate,
	.destroy = student_courses_destroy,
};

/* Whether one student is subscribed to one course (the Unsubscription
 * stream of both ids). */
struct subscription {
	const char *student_id;
	const char *course_id;
	bool subscribed;
};

static int subscription_query(const void *state, dis_query *q)
{
	const struct subscription *s = state;

	return stream_filter(q, "Unsubscription", "student_id", s->student_id,
			     "course_id", s->course_id);
}

static int subscription_mutate(void *state, const dis_event *ev)
{
	struct subscription *s = state;

	s->subscribed = is(ev, "StudentSubscribed");
	return 0;
}

static const dis_state_def subscription_def = {
	.name = "Subscription",
	.size = sizeof(struct subscription),
	.query = subscription_query,
	.mutate = subscription_mutate,
};

/* The students subscribed to a course (the Unsubscription stream of the
 * course). */
struct course_students {
	const char *course_id;
	idlist students;
};

static int course_students_query(const void *state, dis_query *q)
{
	const struct course_students *c = state;

	return stream_filter(q, "Unsubscription", "course_id", c->course_id,
			     NULL, NULL);
}

static int course_students_mutate(void *state, const dis_event *ev)
{
	struct course_students *c = state;
	const char *student = get_str(ev, "student_id");

	if (is(ev, "StudentSubscribed"))
		return idlist_has(&c->students, student)
			       ? 0
			       : idlist_add(&c->students, student);
	idlist_remove(&c->students, student);
	return 0;
}

static void course_students_destroy(void *state)
{
	idlist_free(&((struct course_students *)state)->students);
}

static const dis_state_def course_students_def = {
	.name = "CourseStudents",
	.size = sizeof(struct course_students),
	.query = course_students_query,
	.mutate = course_students_mutate,
	.destroy = course_students_destroy,
};

/* ---- decisions ---- */

struct params {
	const char *course_id;
	const char *student_id;
	const char *name;
	int32_t seats;
};

/* A new decision whose parameters are copies the decision owns. */
static int decision_new(const dis_schema *schema, const char *name,
			dis_process_fn process, const struct params *in,
			dis_decision **out)
{
	dis_decision *d;
	struct params *p;
	int rc;

	if ((in->course_id == NULL && in->student_id == NULL))
		return DIS_EINVAL;
	rc = dis_decision_new(schema, name, process, in, sizeof(*in), &d);
	if (rc)
		return rc;
	p = dis_decision_params(d);
	if ((in->course_id &&
	     !(p->course_id = dis_decision_strdup(d, in->course_id))) ||
	    (in->student_id &&
	     !(p->student_id = dis_decision_strdup(d, in->student_id))) ||
	    (in->name && !(p->name = dis_decision_strdup(d, in->name)))) {
		dis_decision_free(d);
		return DIS_ENOMEM;
	}
	*out = d;
	return 0;
}

static int finish(dis_decision *d, int rc, dis_decision **out)
{
	if (rc) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static int emit(dis_ctx *ctx, const char *type, const char *student,
		const char *course)
{
	dis_event *ev;
	int rc = dis_ctx_emit(ctx, type, &ev);

	if (!rc && student)
		rc = dis_event_set_string(ev, "student_id", student);
	if (!rc && course)
		rc = dis_event_set_string(ev, "course_id", course);
	return rc;
}

static int create_process(dis_ctx *ctx, const void *const *states,
			  const void *params)
{
	const struct course *c = states[0];
	const struct params *p = params;
	dis_event *ev;
	int rc;

	if (c->created)
		return dis_ctx_fail(ctx, COURSES_EALREADY_CREATED,
				    "course %s already exists", p->course_id);
	if (!p->name || !*p->name)
		return dis_ctx_fail(ctx, COURSES_ENAME_EMPTY,
				    "a course needs a name");
	if (p->seats <= 0)
		return dis_ctx_fail(ctx, COURSES_EINVALID_SEATS,
				    "a course needs at least one seat");
	if ((rc = dis_ctx_emit(ctx, "CourseCreated", &ev)))
		return rc;
	rc = dis_event_set_string(ev, "course_id", p->course_id);
	if (!rc)
		rc = dis_event_set_string(ev, "name", p->name);
	if (!rc)
		rc = dis_event_set_int(ev, "seats", p->seats);
	return rc;
}

/* A decision over the Course state of params->course_id. */
static int course_decision(const dis_schema *schema, const char *name,
			   dis_process_fn process, const struct params *in,
			   dis_decision **out)
{
	dis_decision *d;
	struct course init = {0};
	int rc = decision_new(schema, name, process, in, &d);

	if (rc)
		return rc;
	init.course_id =
		((const struct params *)dis_decision_params(d))->course_id;
	return finish(d, dis_decision_add_state(d, &course_def, &init), out);
}

int courses_create(const dis_schema *schema, const char *course_id,
		   const char *name, int32_t seats, dis_decision **out)
{
	struct params p = {.course_id = course_id,
			   .name = name ? name : "",
			   .seats = seats};

	if (!course_id)
		return DIS_EINVAL;
	return course_decision(schema, "CreateCourse", create_process, &p, out);
}

static int close_process(dis_ctx *ctx, const void *const *states,
			 const void *params)
{
	const struct course *c = states[0];
	const struct params *p = params;

	if (!c->created)
		return dis_ctx_fail(ctx, COURSES_ENOT_FOUND, "no course %s",
				    p->course_id);
	if (c->closed)
		return dis_ctx_fail(ctx, COURSES_EALREADY_CLOSED,
				    "course %s is already closed",
				    p->course_id);
	return emit(ctx, "CourseClosed", NULL, p->course_id);
}

int courses_close(const dis_schema *schema, const char *course_id,
		  dis_decision **out)
{
	struct params p = {.course_id = course_id};

	if (!course_id)
		return DIS_EINVAL;
	return course_decision(schema, "CloseCourse", close_process, &p, out);
}

static int rename_process(dis_ctx *ctx, const void *const *states,
			  const void *params)
{
	const struct course *c = states[0];
	const struct params *p = params;
	dis_event *ev;
	int rc;

	if (!c->created)
		return dis_ctx_fail(ctx, COURSES_ENOT_FOUND, "no course %s",
				    p->course_id);
	if (!p->name || !*p->name)
		return dis_ctx_fail(ctx, COURSES_ENAME_EMPTY,
				    "a course needs a name");
	if ((rc = dis_ctx_emit(ctx, "CourseRenamed", &ev)))
		return rc;
	rc = dis_event_set_string(ev, "course_id", p->course_id);
	return rc ? rc : dis_event_set_string(ev, "name", p->name);
}

int courses_rename(const dis_schema *schema, const char *course_id,
		   const char *name, dis_decision **out)
{
	struct params p = {.course_id = course_id, .name = name ? name : ""};

	if (!course_id)
		return DIS_EINVAL;
	return course_decision(schema, "RenameCourse", rename_process, &p, out);
}

static int register_process(dis_ctx *ctx, const void *const *states,
			    const void *params)
{
	const struct student *s = states[0];
	const struct params *p = params;
	dis_event *ev;
	int rc;

	if (s->registered)
		return dis_ctx_fail(ctx, COURSES_EALREADY_REGISTERED,
				    "student %s is already registered",
				    p->student_id);
	if (!p->name || !*p->name)
		return dis_ctx_fail(ctx, COURSES_ENAME_EMPTY,
				    "a student needs a name");
	if ((rc = dis_ctx_emit(ctx, "StudentRegistered", &ev)))
		return rc;
	rc = dis_event_set_string(ev, "student_id", p->student_id);
	return rc ? rc : dis_event_set_string(ev, "name", p->name);
}

int courses_register(const dis_schema *schema, const char *student_id,
		     const char *name, dis_decision **out)
{
	struct params p = {.student_id = student_id, .name = name ? name : ""};
	struct student init = {0};
	dis_decision *d;
	int rc;

	if (!student_id)
		return DIS_EINVAL;
	if ((rc = decision_new(schema, "RegisterStudent", register_process, &p,
			       &d)))
		return rc;
	init.student_id =
		((const struct params *)dis_decision_params(d))->student_id;
	return finish(d, dis_decision_add_state(d, &student_def, &init), out);
}

static int subscribe_process(dis_ctx *ctx, const void *const *states,
			     const void *params)
{
	const struct course_seats *c = states[0];
	const struct student_courses *s = states[1];
	const struct params *p = params;

	if (!s->registered)
		return dis_ctx_fail(ctx, COURSES_ESTUDENT_NOT_FOUND,
				    "student %s is not registered",
				    p->student_id);
	if (!c->created)
		return dis_ctx_fail(ctx, COURSES_ENOT_FOUND, "no course %s",
				    p->course_id);
	if (c->closed)
		return dis_ctx_fail(ctx, COURSES_ECOURSE_CLOSED,
				    "course %s is closed", p->course_id);
	if (c->available <= 0)
		return dis_ctx_fail(ctx, COURSES_ENO_SEATS,
				    "course %s has no seat left", p->course_id);
	if (idlist_has(&s->courses, p->course_id))
		return dis_ctx_fail(ctx, COURSES_EALREADY_SUBSCRIBED,
				    "student %s already attends %s",
				    p->student_id, p->course_id);
	if (s->courses.n >= COURSES_MAX_PER_STUDENT)
		return dis_ctx_fail(ctx, COURSES_ETOO_MANY_COURSES,
				    "student %s already attends %d courses",
				    p->student_id, COURSES_MAX_PER_STUDENT);
	return emit(ctx, "StudentSubscribed", p->student_id, p->course_id);
}

int courses_subscribe(const dis_schema *schema, const char *student_id,
		      const char *course_id, dis_decision **out)
{
	struct params p = {.student_id = student_id, .course_id = course_id};
	struct course_seats seats = {0};
	struct student_courses courses = {0};
	const struct params *own;
	dis_decision *d;
	int rc;

	if (!student_id || !course_id)
		return DIS_EINVAL;
	if ((rc = decision_new(schema, "SubscribeStudent", subscribe_process,
			       &p, &d)))
		return rc;
	own = dis_decision_params(d);
	seats.course_id = own->course_id;
	courses.student_id = own->student_id;
	rc = dis_decision_add_state(d, &seats_def, &seats);
	if (!rc)
		rc = dis_decision_add_state(d, &student_courses_def, &courses);
	return finish(d, rc, out);
}

static int unsubscribe_process(dis_ctx *ctx, const void *const *states,
			       const void *params)
{
	const struct subscription *s = states[0];
	const struct params *p = params;

	if (!s->subscribed)
		return dis_ctx_fail(ctx, COURSES_ENOT_SUBSCRIBED,
				    "student %s does not attend %s",
				    p->student_id, p->course_id);
	return emit(ctx, "StudentUnsubscribed", p->student_id, p->course_id);
}

int courses_unsubscribe(const dis_schema *schema, const char *student_id,
			const char *course_id, dis_decision **out)
{
	struct params p = {.student_id = student_id, .course_id = course_id};
	struct subscription init = {0};
	const struct params *own;
	dis_decision *d;
	int rc;

	if (!student_id || !course_id)
		return DIS_EINVAL;
	if ((rc = decision_new(schema, "UnsubscribeStudent",
			       unsubscribe_process, &p, &d)))
		return rc;
	own = dis_decision_params(d);
	init.student_id = own->student_id;
	init.course_id = own->course_id;
	return finish(d, dis_decision_add_state(d, &subscription_def, &init),
		      out);
}

static int unsubscribe_all_process(dis_ctx *ctx, const void *const *states,
				   const void *params)
{
	const struct course_students *c = states[0];
	const struct params *p = params;
	int rc = 0;

	for (size_t i = 0; i < c->students.n && !rc; i++)
		rc = emit(ctx, "StudentUnsubscribed", c->students.v[i],
			  p->course_id);
	return rc;
}

int courses_unsubscribe_all(const dis_schema *schema, const char *course_id,
			    dis_decision **out)
{
	struct params p = {.course_id = course_id};
	struct course_students init = {0};
	dis_decision *d;
	int rc;

	if (!course_id)
		return DIS_EINVAL;
	if ((rc = decision_new(schema, "UnsubscribeAll",
			       unsubscribe_all_process, &p, &d)))
		return rc;
	init.course_id =
		((const struct params *)dis_decision_params(d))->course_id;
	return finish(d, dis_decision_add_state(d, &course_students_def, &init),
		      out);
}

/* ---- the read model ---- */

int courses_projection(const dis_schema *schema, dis_projection **out,
		       char *errbuf, size_t errlen)
{
	static const struct {
		const char *type;
		const char *sql;
	} on[] = {
		{"CourseCreated",
		 "INSERT INTO {table} (course_id, name, seats,"
		 " available_seats, event_id)"
		 " VALUES ($course_id, $name, $seats, $seats, $event_id)"},
		{"CourseRenamed",
		 "UPDATE {table} SET name = $name, event_id = $event_id"
		 " WHERE course_id = $course_id"},
		{"CourseClosed",
		 "UPDATE {table} SET closed = true, event_id = $event_id"
		 " WHERE course_id = $course_id"},
		{"StudentSubscribed",
		 "UPDATE {table} SET available_seats = available_seats - 1,"
		 " event_id = $event_id WHERE course_id = $course_id"},
		{"StudentUnsubscribed",
		 "UPDATE {table} SET available_seats = available_seats + 1,"
		 " event_id = $event_id WHERE course_id = $course_id"},
	};
	dis_projection *p;
	int rc;

	rc = dis_projection_new(schema, COURSES_PROJECTION, &p, errbuf, errlen);
	if (rc)
		return rc;
	rc = dis_projection_set_ddl(p, "CREATE TABLE {table} ("
				       " course_id TEXT PRIMARY KEY,"
				       " name TEXT NOT NULL,"
				       " seats INT NOT NULL,"
				       " available_seats INT NOT NULL,"
				       " closed BOOLEAN NOT NULL DEFAULT false,"
				       " event_id BIGINT NOT NULL)");
	for (size_t i = 0; !rc && i < sizeof(on) / sizeof(*on); i++)
		rc = dis_projection_on(p, on[i].type, on[i].sql);
	if (rc) {
		snprintf(errbuf, errlen, "%s", dis_projection_errmsg(p));
		dis_projection_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* ---- the policy ---- */

static int on_course_closed(void *arg, dis_maker *maker, const dis_event *ev)
{
	const dis_schema *schema = arg;
	const char *course;
	dis_decision *d;
	int rc;

	if ((rc = dis_event_get_string(ev, "course_id", &course)))
		return rc;
	if ((rc = courses_unsubscribe_all(schema, course, &d)))
		return rc;
	rc = dis_maker_make(maker, d);
	dis_decision_free(d);
	return rc == DIS_EDOMAIN ? 0 : rc;
}

int courses_policy(const dis_schema *schema, dis_policy **out)
{
	dis_query *q;
	dis_filter *f;
	int rc;

	if ((rc = dis_query_new(schema, &q)))
		return rc;
	rc = dis_query_add_filter(q, &f);
	if (!rc)
		rc = dis_filter_type(f, "CourseClosed");
	if (!rc)
		rc = dis_policy_new(COURSES_POLICY, q, on_course_closed,
				    (void *)schema, out);
	dis_query_free(q);
	return rc;
}

/* ---- waiting for the listeners ---- */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int courses_wait_caught_up(dis_store *store, double timeout)
{
	double until = mono_s() + timeout;
	dis_position last = {UINT64_MAX, -1};

	while (mono_s() < until) {
		dis_position head;
		dis_listener_info *info = NULL;
		size_t n = 0;
		int behind = 0, seen = 0;

		if (dis_store_head(store, &head) ||
		    dis_listener_list(store, &info, &n))
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (strcmp(info[i].id, COURSES_PROJECTION) &&
			    strcmp(info[i].id, COURSES_POLICY))
				continue;
			seen++;
			/* No event of its types past its checkpoint (a
			 * listener whose types saw nothing new may not have
			 * moved its checkpoint to the head yet). */
			if (info[i].events_behind > 0)
				behind++;
		}
		dis_free(info);
		if (seen == 2 && !behind) {
			if (dis_position_cmp(head, last) == 0)
				return 0;
			last = head;
		}
		usleep(50000);
	}
	return -1;
}

/* ---- replay ---- */

/* A string -> index map (open addressing). */
typedef struct map {
	char **keys;
	size_t *vals;
	size_t cap;
	size_t n;
} map;

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t *map_get(const map *m, const char *key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = str_hash(key) & (m->cap - 1);;
	     i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return NULL;
		if (!strcmp(m->keys[i], key))
			return &m->vals[i];
	}
}

static int map_put(map *m, const char *key, size_t val)
{
	if ((m->n + 1) * 2 > m->cap) {
		map bigger = {0};

		bigger.cap = m->cap ? m->cap * 2 : 64;
		bigger.keys = calloc(bigger.cap, sizeof(char *));
		bigger.vals = calloc(bigger.cap, sizeof(size_t));
		if (!bigger.keys || !bigger.vals) {
			free(bigger.keys);
			free(bigger.vals);
			return DIS_ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->keys[i])
				continue;
			size_t j = str_hash(m->keys[i]) & (bigger.cap - 1);

			while (bigger.keys[j])
				j = (j + 1) & (bigger.cap - 1);
			bigger.keys[j] = m->keys[i];
			bigger.vals[j] = m->vals[i];
		}
		bigger.n = m->n;
		free(m->keys);
		free(m->vals);
		*m = bigger;
	}
	size_t i = str_hash(key) & (m->cap - 1);

	while (m->keys[i])
		i = (i + 1) & (m->cap - 1);
	if (!(m->keys[i] = strdup(key)))
		return DIS_ENOMEM;
	m->vals[i] = val;
	m->n++;
	return 0;
}

static void map_free(map *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

typedef struct replay_student {
	bool registered;
	idlist courses;
} replay_student;

typedef struct replay {
	courses_model *m;
	map course_ix;
	map student_ix;
	replay_student *students;
	size_t cap_students;
	size_t cap_courses;
	int rc;
} replay;

static void violation(replay *r, uint64_t *counter, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void violation(replay *r, uint64_t *counter, const char *fmt, ...)
{
	va_list ap;

	(*counter)++;
	if (r->m->first_violation[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->m->first_violation, sizeof(r->m->first_violation), fmt,
		  ap);
	va_end(ap);
}

static courses_course *find_course(replay *r, const char *id)
{
	size_t *ix = map_get(&r->course_ix, id);

	return ix ? &r->m->courses[*ix] : NULL;
}

static replay_student *find_student(replay *r, const char *id, bool create)
{
	size_t *ix = map_get(&r->student_ix, id);

	if (ix)
		return &r->students[*ix];
	if (!create)
		return NULL;
	if (r->m->nstudents == r->cap_students) {
		size_t cap = r->cap_students ? r->cap_students * 2 : 64;
		replay_student *s = realloc(r->students, cap * sizeof(*s));

		if (!s)
			return NULL;
		r->students = s;
		r->cap_students = cap;
	}
	if (map_put(&r->student_ix, id, r->m->nstudents))
		return NULL;
	memset(&r->students[r->m->nstudents], 0, sizeof(*r->students));
	return &r->students[r->m->nstudents++];
}

static int on_replay_event(void *arg, const dis_event *ev)
{
	replay *r = arg;
	courses_model *m = r->m;
	const char *cid = get_str(ev, "course_id");
	const char *sid = get_str(ev, "student_id");
	courses_course *c;
	replay_student *s;

	m->events++;
	if (is(ev, "CourseCreated")) {
		int32_t seats = 0;

		if (find_course(r, cid)) {
			violation(r, &m->other_violations,
				  "course %s created twice", cid);
			return 0;
		}
		if (m->ncourses == r->cap_courses) {
			size_t cap = r->cap_courses ? r->cap_courses * 2 : 64;
			courses_course *v =
				realloc(m->courses, cap * sizeof(*v));

			if (!v)
				return DIS_ENOMEM;
			m->courses = v;
			r->cap_courses = cap;
		}
		dis_event_get_int(ev, "seats", &seats);
		c = &m->courses[m->ncourses];
		memset(c, 0, sizeof(*c));
		c->course_id = strdup(cid);
		c->name = strdup(get_str(ev, "name"));
		c->seats = seats;
		c->available = seats;
		if (!c->course_id || !c->name ||
		    map_put(&r->course_ix, cid, m->ncourses)) {
			free(c->course_id);
			free(c->name);
			return DIS_ENOMEM;
		}
		m->ncourses++;
	} else if (is(ev, "CourseRenamed") || is(ev, "CourseClosed")) {
		if (!(c = find_course(r, cid))) {
			violation(r, &m->other_violations,
				  "event %lld on unknown course %s",
				  (long long)dis_event_id(ev), cid);
			return 0;
		}
		if (is(ev, "CourseClosed")) {
			if (c->closed)
				violation(r, &m->other_violations,
					  "course %s closed twice", cid);
			c->closed = true;
		} else {
			char *name = strdup(get_str(ev, "name"));

			if (!name)
				return DIS_ENOMEM;
			free(c->name);
			c->name = name;
		}
	} else if (is(ev, "StudentRegistered")) {
		if (!(s = find_student(r, sid, true)))
			return DIS_ENOMEM;
		if (s->registered)
			violation(r, &m->other_violations,
				  "student %s registered twice", sid);
		s->registered = true;
	} else if (is(ev, "StudentSubscribed")) {
		m->subscriptions++;
		c = find_course(r, cid);
		if (!(s = find_student(r, sid, true)))
			return DIS_ENOMEM;
		if (!c || c->closed || !s->registered ||
		    idlist_has(&s->courses, cid))
			violation(r, &m->other_violations,
				  "event %lld: %s subscribed to %s against "
				  "the rules",
				  (long long)dis_event_id(ev), sid, cid);
		if (c) {
			c->available--;
			c->subscribed++;
			if (c->available < 0)
				violation(r, &m->negative_seats,
					  "event %lld: course %s has %d seats",
					  (long long)dis_event_id(ev), cid,
					  c->available);
		}
		if (idlist_add(&s->courses, cid))
			return DIS_ENOMEM;
		if ((int32_t)s->courses.n > m->max_held)
			m->max_held = (int32_t)s->courses.n;
		if (s->courses.n > COURSES_MAX_PER_STUDENT)
			violation(r, &m->too_many,
				  "event %lld: student %s holds %zu courses",
				  (long long)dis_event_id(ev), sid,
				  s->courses.n);
	} else if (is(ev, "StudentUnsubscribed")) {
		m->unsubscriptions++;
		c = find_course(r, cid);
		s = find_student(r, sid, false);
		if (!s || !idlist_has(&s->courses, cid)) {
			violation(r, &m->other_violations,
				  "event %lld: %s unsubscribed from %s, "
				  "which it did not attend",
				  (long long)dis_event_id(ev), sid, cid);
			return 0;
		}
		idlist_remove(&s->courses, cid);
		if (c) {
			c->available++;
			c->subscribed--;
		}
	}
	return 0;
}

static int cmp_course(const void *a, const void *b)
{
	return strcmp(((const courses_course *)a)->course_id,
		      ((const courses_course *)b)->course_id);
}

int courses_replay(dis_store *store, courses_model **out, char *errbuf,
		   size_t errlen)
{
	const dis_schema *schema = dis_store_schema(store);
	dis_query *q = NULL;
	dis_filter *f;
	dis_position pos = DIS_POSITION_START, head, next;
	replay r = {0};
	int rc;

	r.m = calloc(1, sizeof(*r.m));
	if (!r.m)
		return DIS_ENOMEM;
	rc = dis_store_head(store, &head);
	if (!rc)
		rc = dis_query_new(schema, &q);
	if (!rc)
		rc = dis_query_add_filter(q, &f);
	/* Read in position order until past the head as of the start. */
	while (!rc) {
		rc = dis_store_read(store, q, pos, 5000, on_replay_event, &r,
				    &next);
		if (rc || dis_position_cmp(next, head) >= 0)
			break;
		/* An older transaction still holds the barrier back. */
		if (dis_position_cmp(next, pos) == 0)
			usleep(10000);
		pos = next;
	}
	dis_query_free(q);
	for (size_t i = 0; i < r.m->nstudents; i++)
		idlist_free(&r.students[i].courses);
	free(r.students);
	map_free(&r.course_ix);
	map_free(&r.student_ix);
	if (rc) {
		snprintf(errbuf, errlen, "replay: %s", dis_store_errmsg(store));
		courses_model_free(r.m);
		return rc;
	}
	qsort(r.m->courses, r.m->ncourses, sizeof(*r.m->courses), cmp_course);
	*out = r.m;
	return 0;
}

void courses_model_free(courses_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->ncourses; i++) {
		free(m->courses[i].course_id);
		free(m->courses[i].name);
	}
	free(m->courses);
	free(m);
}

size_t courses_model_closed_with_students(const courses_model *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->ncourses; i++)
		n += m->courses[i].closed && m->courses[i].subscribed > 0;
	return n;
}

int courses_compare_table(const courses_model *m, PGconn *conn,
			  const char *table, char *errbuf, size_t errlen)
{
	char sql[256];
	PGresult *res;
	int rows, rc = 0;

	snprintf(sql, sizeof(sql),
		 "SELECT course_id, name, seats, available_seats, closed"
		 " FROM \"%s\" ORDER BY course_id COLLATE \"C\"",
		 table);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errbuf, errlen, "reading %s: %s", table,
			 PQresultErrorMessage(res));
		PQclear(res);
		return DIS_EPG;
	}
	rows = PQntuples(res);
	if ((size_t)rows != m->ncourses) {
		snprintf(errbuf, errlen, "%s has %d courses, the replay %zu",
			 table, rows, m->ncourses);
		rc = DIS_EINVAL;
	}
	for (int i = 0; !rc && i < rows; i++) {
		const courses_course *c = &m->courses[i];
		bool closed = PQgetvalue(res, i, 4)[0] == 't';

		if (strcmp(PQgetvalue(res, i, 0), c->course_id) ||
		    strcmp(PQgetvalue(res, i, 1), c->name) ||
		    atoi(PQgetvalue(res, i, 2)) != c->seats ||
		    atoi(PQgetvalue(res, i, 3)) != c->available ||
		    closed != c->closed) {
			snprintf(errbuf, errlen,
				 "%s row %s (%s, %s seats, %s available, "
				 "closed %s) differs from the replay's %s "
				 "(%s, %d, %d, %s)",
				 table, PQgetvalue(res, i, 0),
				 PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
				 PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
				 c->course_id, c->name, c->seats, c->available,
				 c->closed ? "t" : "f");
			rc = DIS_EINVAL;
		}
	}
	PQclear(res);
	return rc;
}
