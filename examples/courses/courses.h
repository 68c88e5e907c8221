/*
 * The courses example (after Disintegrate's): courses with a number of
 * seats, students, and subscriptions. Rules: a course is created once and
 * closed once; a student registers once; a registered student subscribes
 * to an open course that has a free seat, at most once per course and to
 * at most COURSES_MAX_PER_STUDENT courses at a time; a subscribed student
 * may unsubscribe. When a course closes, a policy unsubscribes its
 * students. A projection keeps the table `courses` (the courses with their
 * available seats).
 *
 * States read only what their rule needs: subscribing reads the course's
 * seats (CourseSubscription stream of the course) and the student's
 * subscriptions (StudentSubscription stream of the student), so two
 * subscriptions conflict only when they share the course or the student.
 */
#ifndef COURSES_H
#define COURSES_H

#include <disintegrate/disintegrate.h>

#include <libpq-fe.h>

#define COURSES_MAX_PER_STUDENT 2

/* Domain errors (dis_decision_domain_code). */
enum {
	COURSES_ENOT_FOUND = 1, /* no such course */
	COURSES_EALREADY_CREATED = 2,
	COURSES_EALREADY_CLOSED = 3,
	COURSES_EINVALID_SEATS = 4,
	COURSES_ENAME_EMPTY = 5,
	COURSES_ESTUDENT_NOT_FOUND = 6, /* not registered */
	COURSES_EALREADY_REGISTERED = 7,
	COURSES_ENO_SEATS = 8,
	COURSES_ECOURSE_CLOSED = 9,
	COURSES_EALREADY_SUBSCRIBED = 10,
	COURSES_ETOO_MANY_COURSES = 11,
	COURSES_ENOT_SUBSCRIBED = 12
};

/* The event schema (courses.avsc), embedded, and its parser. */
extern const char courses_avsc[];
int courses_schema(dis_schema **out, char *errbuf, size_t errlen);

/* ---- decisions (free them with dis_decision_free) ---- */

int courses_create(const dis_schema *schema, const char *course_id,
		   const char *name, int32_t seats, dis_decision **out);
int courses_close(const dis_schema *schema, const char *course_id,
		  dis_decision **out);
int courses_rename(const dis_schema *schema, const char *course_id,
		   const char *name, dis_decision **out);
int courses_register(const dis_schema *schema, const char *student_id,
		     const char *name, dis_decision **out);
int courses_subscribe(const dis_schema *schema, const char *student_id,
		      const char *course_id, dis_decision **out);
int courses_unsubscribe(const dis_schema *schema, const char *student_id,
			const char *course_id, dis_decision **out);
/* Unsubscribes every student of a course (the policy's decision; emits
 * nothing when none is subscribed). */
int courses_unsubscribe_all(const dis_schema *schema, const char *course_id,
			    dis_decision **out);

/* ---- read model and policy ---- */

#define COURSES_PROJECTION "courses"
#define COURSES_POLICY "courses_unsubscribe_on_close"

/* The projection of table `courses`: course_id, name, seats,
 * available_seats, closed, event_id (the last event applied). */
int courses_projection(const dis_schema *schema, dis_projection **out,
		       char *errbuf, size_t errlen);
/* The policy: on CourseClosed, unsubscribe the course's students. */
int courses_policy(const dis_schema *schema, dis_policy **out);

/*
 * Waits until the read model's and the policy's listeners have handled
 * every event of their types (twice in a row with the same newest event:
 * the policy appends). 0, or -1 after `timeout` seconds or on a database
 * error.
 */
int courses_wait_caught_up(dis_store *store, double timeout);

/* ---- replay: the log folded in memory, with the rules checked ---- */

typedef struct courses_course {
	char *course_id;
	char *name;
	int32_t seats;
	int32_t available;
	bool closed;
	int32_t subscribed; /* students subscribed now */
} courses_course;

typedef struct courses_model {
	courses_course *courses; /* sorted by course_id after the replay */
	size_t ncourses;
	size_t nstudents;
	uint64_t events;
	uint64_t subscriptions;   /* StudentSubscribed events */
	uint64_t unsubscriptions; /* StudentUnsubscribed events */
	/* Rule violations seen while replaying, in log order. */
	uint64_t negative_seats; /* a subscription took a seat that was not */
	uint64_t too_many;       /* a student held more than the maximum */
	uint64_t other_violations;
	int32_t max_held; /* most courses a student held at once */
	char first_violation[256];
	void *priv;
} courses_model;

/* Reads the whole log through `store` and replays it. */
int courses_replay(dis_store *store, courses_model **out, char *errbuf,
		   size_t errlen);
void courses_model_free(courses_model *m);
/* Number of closed courses that still have subscribed students. */
size_t courses_model_closed_with_students(const courses_model *m);

/*
 * Compares table `table` (the projection's) with the replay: 0 when they
 * hold the same courses with the same values, else DIS_EINVAL with the
 * first difference in errbuf.
 */
int courses_compare_table(const courses_model *m, PGconn *conn,
			  const char *table, char *errbuf, size_t errlen);

#endif
