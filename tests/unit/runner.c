/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shared CUnit runner: suite selection, listing, seeds.  See runner.h.
 */
#include "runner.h"

#include <CUnit/Basic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t chosen_seed;
static int seed_chosen;

uint64_t s2e_test_seed(void)
{
    if (!seed_chosen) {
        const char *env = getenv("S2E_TEST_SEED");
        if (env && *env) {
            chosen_seed = strtoull(env, NULL, 0);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            chosen_seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
        }
        seed_chosen = 1;
        printf("random seed: S2E_TEST_SEED=%" PRIu64 "\n", chosen_seed);
        fflush(stdout);
    }
    return chosen_seed;
}

uint64_t s2e_test_scale(uint64_t n)
{
    const char *env = getenv("S2E_TEST_SCALE");
    double scale = env && *env ? strtod(env, NULL) : 1.0;
    double scaled = (double)n * scale;
    return scaled < 1.0 ? 1 : (uint64_t)scaled;
}

void s2e_test_rng_init(S2ETestRng *rng, uint64_t seed)
{
    rng->state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint64_t s2e_test_rng_next(S2ETestRng *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint64_t s2e_test_rng_below(S2ETestRng *rng, uint64_t bound)
{
    return s2e_test_rng_next(rng) % bound;
}

CU_pSuite s2e_test_suite(const char *name)
{
    CU_pSuite suite = CU_add_suite(name, NULL, NULL);
    if (!suite) {
        fprintf(stderr, "cannot add suite %s: %s\n", name, CU_get_error_msg());
        exit(2);
    }
    return suite;
}

void s2e_test_add(CU_pSuite suite, const char *name, CU_TestFunc fn)
{
    if (!CU_add_test(suite, name, fn)) {
        fprintf(stderr, "cannot add test %s: %s\n", name, CU_get_error_msg());
        exit(2);
    }
}

static void list_tests(void)
{
    CU_pTestRegistry reg = CU_get_registry();
    for (CU_pSuite s = reg->pSuite; s; s = s->pNext) {
        for (CU_pTest t = s->pTest; t; t = t->pNext) {
            printf("%s/%s\n", s->pName, t->pName);
        }
    }
}

/* Deactivate everything not named on the command line. */
static int select_tests(int argc, char **argv)
{
    CU_pTestRegistry reg = CU_get_registry();
    int matched = 0;

    for (CU_pSuite s = reg->pSuite; s; s = s->pNext) {
        int suite_on = 0;
        for (CU_pTest t = s->pTest; t; t = t->pNext) {
            int on = 0;
            for (int i = 1; i < argc; i++) {
                const char *slash = strchr(argv[i], '/');
                size_t slen = slash ? (size_t)(slash - argv[i]) : strlen(argv[i]);
                if (strlen(s->pName) == slen && !strncmp(s->pName, argv[i], slen) &&
                    (!slash || !strcmp(slash + 1, t->pName))) {
                    on = 1;
                }
            }
            CU_set_test_active(t, on ? CU_TRUE : CU_FALSE);
            suite_on |= on;
            matched += on;
        }
        CU_set_suite_active(s, suite_on ? CU_TRUE : CU_FALSE);
    }
    return matched;
}

int main(int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 2;
    }
    s2e_test_register();

    if (argc > 1 && !strcmp(argv[1], "--list")) {
        list_tests();
        CU_cleanup_registry();
        return 0;
    }
    if (argc > 1 && select_tests(argc, argv) == 0) {
        fprintf(stderr, "no test matches the names given (try --list)\n");
        CU_cleanup_registry();
        return 2;
    }

    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() +
                      CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test was run\n");
        return 2;
    }
    return failed ? 1 : 0;
}
