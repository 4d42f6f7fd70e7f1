/*
 * unit.h - the one CUnit main every unit test program shares: register a
 * table of tests as one suite, run it verbosely (CI prints the summary),
 * and exit 1 if any assertion or test failed, so automake's driver sees it.
 */
#ifndef PARLEY_UNIT_H
#define PARLEY_UNIT_H

#include <stddef.h>

#include <CUnit/Basic.h>

struct unit_test {
	const char *name;
	CU_TestFunc fn;
};

static inline int
unit_run(const char *suite_name, const struct unit_test *tests, size_t n)
{
	CU_pSuite suite;
	unsigned failures;

	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	if ((suite = CU_add_suite(suite_name, NULL, NULL)) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL)
			goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
fail:
	CU_cleanup_registry();
	return 1;
}

#define UNIT_RUN(name, tests) unit_run(name, tests, sizeof(tests) / sizeof(tests[0]))

#endif
