/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared CUnit runner for the unit tests.
 *
 * Each test binary defines s2e_test_register(), which adds its suites with
 * CU_add_suite()/CU_add_test(); the runner's main() parses the command line:
 *
 *   test-foo              run every suite
 *   test-foo --list       list suites and tests
 *   test-foo SUITE[/TEST] ...   run only those
 *
 * Random tests take their seed from s2e_test_seed() (environment variable
 * S2E_TEST_SEED, else time-based) and print it, so a failure can be
 * replayed.  s2e_test_scale(n) scales operation counts by S2E_TEST_SCALE
 * (a float, default 1) so CI and a quick local run can differ.
 * The exit status is non-zero when any test fails.
 */
#ifndef S2E_TEST_RUNNER_H
#define S2E_TEST_RUNNER_H

#include <CUnit/CUnit.h>
#include <stdint.h>

void s2e_test_register(void);

/* The seed for this run; printed once on first use. */
uint64_t s2e_test_seed(void);

/* @n scaled by S2E_TEST_SCALE (at least 1). */
uint64_t s2e_test_scale(uint64_t n);

/* Add a suite or report why not: a helper for s2e_test_register(). */
CU_pSuite s2e_test_suite(const char *name);
void s2e_test_add(CU_pSuite suite, const char *name, CU_TestFunc fn);

/* xorshift64* generator for tests: deterministic from the seed. */
typedef struct S2ETestRng {
    uint64_t state;
} S2ETestRng;

void s2e_test_rng_init(S2ETestRng *rng, uint64_t seed);
uint64_t s2e_test_rng_next(S2ETestRng *rng);
/* Uniform in [0, bound) (bound > 0). */
uint64_t s2e_test_rng_below(S2ETestRng *rng, uint64_t bound);

#endif
