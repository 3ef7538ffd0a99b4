/* test_journal.c — the per-VM journal: names, load/save round trip, atomic replace, flock, corrupt files. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "smmuctl/journal.h"
#include "smmuctl/proc.h"
#include "support/testutil.h"

static void test_names(void **state)
{
    (void)state;
    struct smmu_error e = SMMU_ERROR_INIT;
    char out[128];
    assert_int_equal(smmu_journal_check_name("vm1", &e), 0);
    assert_int_equal(smmu_journal_check_name("a.b_c-D9", &e), 0);
    assert_int_equal(smmu_journal_check_name("", &e), -EINVAL);
    assert_int_equal(smmu_journal_check_name(".hidden", &e), -EINVAL);
    assert_int_equal(smmu_journal_check_name("../etc", &e), -EINVAL);
    assert_int_equal(smmu_journal_check_name("vm/etc", &e), -EINVAL);
    assert_non_null(strstr(e.message, "'/' at position 3"));
    assert_int_equal(smmu_journal_check_name("a b", &e), -EINVAL);
    char longname[120];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(smmu_journal_check_name(longname, &e), -EINVAL);

    smmu_journal_name_from_addr("unix:/run/vm1.qmp", out, sizeof(out));
    assert_string_equal(out, "run_vm1.qmp");
    smmu_journal_name_from_addr("tcp:127.0.0.1:4444", out, sizeof(out));
    assert_string_equal(out, "tcp_127.0.0.1_4444");
    assert_int_equal(smmu_journal_check_name(out, &e), 0);
    smmu_journal_name_from_addr("unix:/.x", out, sizeof(out));
    assert_int_equal(smmu_journal_check_name(out, &e), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("journal");
    char state_dir[4096], path[4200];
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j;
    snprintf(state_dir, sizeof(state_dir), "%s/a/b/state", dir); /* created on demand */
    assert_int_equal(smmu_journal_open(state_dir, "vm1", "unix:/run/vm1.qmp", 100, &j, &e), 0);
    assert_null(smmu_journal_txn(j));
    assert_int_equal(json_array_size(smmu_journal_devices(j)), 0);
    json_array_append_new(smmu_journal_devices(j), json_pack("{s:s,s:s}", "id", "hostdev-0009-01-00.0", "bdf",
                                                             "0009:01:00.0"));
    json_object_set_new(smmu_journal_doc(j), "txn", json_pack("{s:s,s:[]}", "op", "attach", "steps"));
    assert_int_equal(smmu_journal_save(j, &e), 0);
    snprintf(path, sizeof(path), "%s/vm1.json", state_dir);
    assert_string_equal(smmu_journal_path(j), path);
    smmu_journal_close(j);

    /* no temp file left behind; the state dir is private */
    struct stat st;
    assert_int_equal(stat(state_dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c tmp", state_dir);
    FILE *p = popen(cmd, "r");
    char buf[16] = "";
    assert_non_null(fgets(buf, sizeof(buf), p));
    pclose(p);
    assert_int_equal(atoi(buf), 0);

    assert_int_equal(smmu_journal_open(state_dir, "vm1", "unix:/run/vm1.qmp", 100, &j, &e), 0);
    assert_non_null(smmu_journal_txn(j));
    assert_non_null(smmu_journal_find_device(j, "0009:01:00.0"));
    assert_non_null(smmu_journal_find_device(j, "hostdev-0009-01-00.0"));
    assert_null(smmu_journal_find_device(j, "nope"));
    smmu_journal_remove_device(j, "hostdev-0009-01-00.0");
    assert_null(smmu_journal_find_device(j, "0009:01:00.0"));
    smmu_journal_close(j);
    smmu_test_rmtree(dir);
    free(dir);
}

/* A corrupt journal is refused with its path named, and never overwritten. */
static void test_corrupt(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("journal");
    char path[4200];
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j = NULL;
    snprintf(path, sizeof(path), "%s/vm1.json", dir);
    const char *bad[] = {"{\"version\": 1, ", "[]", "{\"version\": 2}", "garbage"};
    for (size_t i = 0; i < 4; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        assert_int_equal(smmu_journal_open(dir, "vm1", "", 100, &j, &e), -EPROTO);
        assert_non_null(strstr(e.message, path));
        assert_non_null(strstr(e.message, "corrupt"));
        char *content = smmu_test_read_file(path, NULL);
        assert_string_equal(content, bad[i]);
        free(content);
    }
    smmu_test_rmtree(dir);
    free(dir);
}

/* Schema violations are corruption like a parse error (issue 15.7): refused with the member named, the file
 * left byte for byte as it was; the version message has no stray character. */
static void test_schema_violations(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("journal");
    char path[4200];
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j = NULL;
    static const struct { const char *doc, *why; } bad[] = {
        {"{\"version\":1,\"devices\":\"x\"}", "(\"devices\" is not an array)"},
        {"{\"version\":1,\"devices\":[{\"id\":null,\"bdf\":\"0009:01:00.0\"}]}", "(devices[0].id is not a string)"},
        {"{\"version\":1,\"devices\":[{\"bdf\":\"0009:01:00.0\"}]}", "(devices[0].id is missing)"},
        {"{\"version\":1,\"devices\":[7]}", "(devices[0] is not an object)"},
        {"{\"version\":1,\"devices\":[],\"iommufd\":\"iommufd0\"}", "\"iommufd\" is not null or an object"},
        {"{\"version\":1,\"devices\":[],\"txn\":{\"op\":\"attach\",\"steps\":{}}}", "\"txn\" is not null"},
        {"{\"version\":1,\"txn\":{\"op\":\"attach\",\"steps\":[{\"kind\":\"device_add\",\"name\":\"h\"}]}}",
         "(txn.steps[0].state is missing)"},
        {"{\"version\":3,\"devices\":[]}", "(not a version 1 journal: \"version\" is an unknown version);"},
        {"{\"version\":\"1\",\"devices\":[]}", "(not a version 1 journal: \"version\" is not a number);"},
        {"{\"devices\":[]}", "(not a version 1 journal: \"version\" is missing);"},
    };
    snprintf(path, sizeof(path), "%s/vm1.json", dir);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i].doc, f);
        fclose(f);
        assert_int_equal(smmu_journal_open(dir, "vm1", "", 100, &j, &e), -EPROTO);
        if (!strstr(e.message, bad[i].why))
            fail_msg("case %zu: '%s' does not contain '%s'", i, e.message, bad[i].why);
        char *content = smmu_test_read_file(path, NULL);
        assert_string_equal(content, bad[i].doc);
        free(content);
    }
    smmu_test_rmtree(dir);
    free(dir);
}

/* Two processes: the second waits for the lock, then gets EBUSY naming the holder's pid and command. */
static void test_lock(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("journal");
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j;
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) {
        smmu_journal *cj;
        char c = 0;
        if (smmu_journal_open(dir, "vm1", "", 1000, &cj, NULL) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        smmu_journal_close(cj);
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 50, &j, &e), -EBUSY);
    char want[64];
    snprintf(want, sizeof(want), "(pid %d: ", (int)pid);
    if (!strstr(e.message, want) || !strstr(e.message, "test_journal")) { /* for whom: pid and its command */
        assert_int_equal(write(go[1], "g", 1), 1); /* let the child go before failing, or it waits forever */
        fail_msg("lock holder not named as '%s…test_journal…': %s", want, e.message);
    }
    /* another VM is not blocked */
    assert_int_equal(smmu_journal_open(dir, "vm2", "", 50, &j, &e), 0);
    smmu_journal_close(j);
    /* release: now it is ours */
    assert_int_equal(write(go[1], "g", 1), 1);
    int st;
    waitpid(pid, &st, 0);
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 1000, &j, &e), 0);
    smmu_journal_close(j);
    close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
    smmu_test_rmtree(dir);
    free(dir);
}

/* The lock file names the holder (pid and command), but a waiter never names a process that is not the holder
 * any more: here the pid that wrote it has exited (a zombie, not yet reaped, then reaped) while a child it forked
 * keeps the lock (the flock is shared by the inherited fd), and then the file names a live pid that runs another
 * command (a reused pid: same number, another start time). */
static void test_lock_never_names_a_gone_holder(void **state)
{
    (void)state;
    char *dir = smmu_test_mkdtemp("journal");
    struct smmu_error e = SMMU_ERROR_INIT;
    smmu_journal *j;
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) {
        smmu_journal *cj;
        char c = 0;
        if (smmu_journal_open(dir, "vm1", "", 1000, &cj, NULL) < 0)
            _exit(1);
        if (fork() == 0) { /* the grandchild inherits the locked fd and holds the lock until told */
            if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
                _exit(1);
            _exit(0);
        }
        _exit(0); /* the writer of the lock file is gone */
    }
    char c, want[64], lock[4300];
    assert_int_equal(read(ready[0], &c, 1), 1);
    snprintf(want, sizeof(want), "(pid %d", (int)pid);
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0); /* exited, still a zombie */
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 50, &j, &e), -EBUSY);
    bool named_zombie = strstr(e.message, want) != NULL;
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid); /* reaped: gone for good */
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 50, &j, &e), -EBUSY);
    bool named_dead = strstr(e.message, want) != NULL;
    /* a reused pid: alive (this test), but not the process that wrote the lock file */
    snprintf(lock, sizeof(lock), "%s/vm1.lock", dir);
    FILE *fp = fopen(lock, "w");
    assert_non_null(fp);
    fprintf(fp, "%d %llu\nsmmuctl --qmp /run/vm1.qmp attach 0009:01:00.0\n", (int)getpid(),
            smmu_proc_start_time(0, NULL) + 1); /* this pid, but a process that started at another time */
    fclose(fp);
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 50, &j, &e), -EBUSY);
    snprintf(want, sizeof(want), "(pid %d", (int)getpid());
    bool named_other = strstr(e.message, want) != NULL;
    assert_int_equal(write(go[1], "g", 1), 1); /* let the grandchild go before asserting */
    assert_false(named_zombie);
    assert_false(named_dead);
    assert_false(named_other);
    assert_non_null(strstr(e.message, "another smmuctl is working on this VM"));
    close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
    assert_int_equal(smmu_journal_open(dir, "vm1", "", 5000, &j, &e), 0); /* released with the grandchild */
    smmu_journal_close(j);
    smmu_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_schema_violations),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_lock_never_names_a_gone_holder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
