/*
 * Given/when/then cases of the courses example. The same cases run in
 * memory (unit suite) and, with --store, against a fresh PostgreSQL
 * database (pg suite).
 */
#include "example_cases.h"

#include "courses.h"

#define COURSE(id, seats)                                               \
	GIVEN("CourseCreated", "{\"course_id\": \"" id "\", \"name\": " \
			       "\"some course\", \"seats\": " #seats "}")
#define STUDENT(id)                \
	GIVEN("StudentRegistered", \
	      "{\"student_id\": \"" id "\", \"name\": \"some name\"}")
#define SUBSCRIBED(student, course)                              \
	GIVEN("StudentSubscribed", "{\"student_id\": \"" student \
				   "\", \"course_id\": \"" course "\"}")

/* ---- courses ---- */

static void it_creates_a_course(void **state)
{
	(void)state;
	WHEN(courses_create(schema, "1", "test course", 1, &d));
	THEN("CourseCreated",
	     "{\"course_id\": \"1\", \"name\": \"test course\", \"seats\": 1}");
}

static void it_does_not_create_a_course_twice(void **state)
{
	(void)state;
	COURSE("1", 3);
	WHEN(courses_create(schema, "1", "some course", 1, &d));
	THEN_ERR(COURSES_EALREADY_CREATED);
}

static void it_does_not_create_a_course_without_a_name(void **state)
{
	(void)state;
	WHEN(courses_create(schema, "1", "", 1, &d));
	THEN_ERR(COURSES_ENAME_EMPTY);
}

static void it_does_not_create_a_course_without_seats(void **state)
{
	(void)state;
	WHEN(courses_create(schema, "1", "x", 0, &d));
	THEN_ERR(COURSES_EINVALID_SEATS);
}

static void it_renames_a_course(void **state)
{
	(void)state;
	COURSE("1", 1);
	WHEN(courses_rename(schema, "1", "new name", &d));
	THEN("CourseRenamed", "{\"course_id\": \"1\", \"name\": \"new name\"}");
}

static void it_does_not_rename_a_missing_course(void **state)
{
	(void)state;
	WHEN(courses_rename(schema, "1", "new name", &d));
	THEN_ERR(COURSES_ENOT_FOUND);
}

static void it_does_not_rename_to_an_empty_name(void **state)
{
	(void)state;
	COURSE("1", 1);
	WHEN(courses_rename(schema, "1", "", &d));
	THEN_ERR(COURSES_ENAME_EMPTY);
}

static void it_closes_a_course(void **state)
{
	(void)state;
	COURSE("1", 1);
	WHEN(courses_close(schema, "1", &d));
	THEN("CourseClosed", "{\"course_id\": \"1\"}");
}

static void it_does_not_close_a_missing_course(void **state)
{
	(void)state;
	WHEN(courses_close(schema, "1", &d));
	THEN_ERR(COURSES_ENOT_FOUND);
}

static void it_does_not_close_a_course_twice(void **state)
{
	(void)state;
	COURSE("1", 1);
	GIVEN("CourseClosed", "{\"course_id\": \"1\"}");
	WHEN(courses_close(schema, "1", &d));
	THEN_ERR(COURSES_EALREADY_CLOSED);
}

/* ---- students ---- */

static void it_registers_a_student(void **state)
{
	(void)state;
	WHEN(courses_register(schema, "1", "some name", &d));
	THEN("StudentRegistered",
	     "{\"student_id\": \"1\", \"name\": \"some name\"}");
}

static void it_does_not_register_a_student_twice(void **state)
{
	(void)state;
	STUDENT("1");
	WHEN(courses_register(schema, "1", "some name", &d));
	THEN_ERR(COURSES_EALREADY_REGISTERED);
}

/* ---- subscriptions ---- */

static void it_subscribes_a_student(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN("StudentSubscribed",
	     "{\"student_id\": \"s\", \"course_id\": \"c\"}");
}

static void it_does_not_subscribe_an_unregistered_student(void **state)
{
	(void)state;
	COURSE("c", 1);
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ESTUDENT_NOT_FOUND);
}

static void it_does_not_subscribe_to_a_missing_course(void **state)
{
	(void)state;
	STUDENT("s");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ENOT_FOUND);
}

static void it_does_not_subscribe_to_a_closed_course(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	GIVEN("CourseClosed", "{\"course_id\": \"c\"}");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ECOURSE_CLOSED);
}

static void it_does_not_subscribe_to_a_full_course(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	SUBSCRIBED("another", "c");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ENO_SEATS);
}

static void an_unsubscription_frees_a_seat(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	SUBSCRIBED("another", "c");
	GIVEN("StudentUnsubscribed",
	      "{\"student_id\": \"another\", \"course_id\": \"c\"}");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN("StudentSubscribed",
	     "{\"student_id\": \"s\", \"course_id\": \"c\"}");
}

static void it_does_not_subscribe_a_student_twice(void **state)
{
	(void)state;
	COURSE("c", 2);
	STUDENT("s");
	SUBSCRIBED("s", "c");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_EALREADY_SUBSCRIBED);
}

static void it_does_not_subscribe_a_student_to_a_third_course(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	SUBSCRIBED("s", "another course");
	SUBSCRIBED("s", "yet another course");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ETOO_MANY_COURSES);
}

static void a_concurrent_subscription_takes_the_last_seat(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	/* Someone else subscribes between the load and the append: the
	 * append conflicts and the retry finds the course full. */
	MEANWHILE("StudentSubscribed",
		  "{\"student_id\": \"other\", \"course_id\": \"c\"}");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ENO_SEATS);
}

static void another_course_does_not_conflict(void **state)
{
	(void)state;
	COURSE("c", 1);
	STUDENT("s");
	MEANWHILE("StudentSubscribed",
		  "{\"student_id\": \"other\", \"course_id\": \"elsewhere\"}");
	WHEN(courses_subscribe(schema, "s", "c", &d));
	THEN("StudentSubscribed",
	     "{\"student_id\": \"s\", \"course_id\": \"c\"}");
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 1);
}

static void it_unsubscribes_a_student(void **state)
{
	(void)state;
	SUBSCRIBED("s", "c");
	WHEN(courses_unsubscribe(schema, "s", "c", &d));
	THEN("StudentUnsubscribed",
	     "{\"student_id\": \"s\", \"course_id\": \"c\"}");
}

static void it_does_not_unsubscribe_a_student_not_subscribed(void **state)
{
	(void)state;
	SUBSCRIBED("s", "other");
	SUBSCRIBED("t", "c");
	WHEN(courses_unsubscribe(schema, "s", "c", &d));
	THEN_ERR(COURSES_ENOT_SUBSCRIBED);
}

static void it_unsubscribes_every_student_of_a_course(void **state)
{
	(void)state;
	COURSE("c", 3);
	SUBSCRIBED("a", "c");
	SUBSCRIBED("b", "c");
	SUBSCRIBED("x", "other");
	GIVEN("StudentUnsubscribed",
	      "{\"student_id\": \"a\", \"course_id\": \"c\"}");
	SUBSCRIBED("d", "c");
	WHEN(courses_unsubscribe_all(schema, "c", &d));
	THEN("StudentUnsubscribed",
	     "{\"student_id\": \"b\", \"course_id\": \"c\"}",
	     "StudentUnsubscribed",
	     "{\"student_id\": \"d\", \"course_id\": \"c\"}");
}

static void unsubscribing_an_empty_course_emits_nothing(void **state)
{
	(void)state;
	COURSE("c", 3);
	WHEN(courses_unsubscribe_all(schema, "c", &d));
	THEN_NOTHING();
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(it_creates_a_course, case_setup),
		cmocka_unit_test_setup(it_does_not_create_a_course_twice,
				       case_setup),
		cmocka_unit_test_setup(
			it_does_not_create_a_course_without_a_name, case_setup),
		cmocka_unit_test_setup(
			it_does_not_create_a_course_without_seats, case_setup),
		cmocka_unit_test_setup(it_renames_a_course, case_setup),
		cmocka_unit_test_setup(it_does_not_rename_a_missing_course,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_rename_to_an_empty_name,
				       case_setup),
		cmocka_unit_test_setup(it_closes_a_course, case_setup),
		cmocka_unit_test_setup(it_does_not_close_a_missing_course,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_close_a_course_twice,
				       case_setup),
		cmocka_unit_test_setup(it_registers_a_student, case_setup),
		cmocka_unit_test_setup(it_does_not_register_a_student_twice,
				       case_setup),
		cmocka_unit_test_setup(it_subscribes_a_student, case_setup),
		cmocka_unit_test_setup(
			it_does_not_subscribe_an_unregistered_student,
			case_setup),
		cmocka_unit_test_setup(
			it_does_not_subscribe_to_a_missing_course, case_setup),
		cmocka_unit_test_setup(it_does_not_subscribe_to_a_closed_course,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_subscribe_to_a_full_course,
				       case_setup),
		cmocka_unit_test_setup(an_unsubscription_frees_a_seat,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_subscribe_a_student_twice,
				       case_setup),
		cmocka_unit_test_setup(
			it_does_not_subscribe_a_student_to_a_third_course,
			case_setup),
		cmocka_unit_test_setup(
			a_concurrent_subscription_takes_the_last_seat,
			case_setup),
		cmocka_unit_test_setup(another_course_does_not_conflict,
				       case_setup),
		cmocka_unit_test_setup(it_unsubscribes_a_student, case_setup),
		cmocka_unit_test_setup(
			it_does_not_unsubscribe_a_student_not_subscribed,
			case_setup),
		cmocka_unit_test_setup(
			it_unsubscribes_every_student_of_a_course, case_setup),
		cmocka_unit_test_setup(
			unsubscribing_an_empty_course_emits_nothing,
			case_setup),
	};

	return run_example_cases("courses", courses_schema, tests,
				 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
