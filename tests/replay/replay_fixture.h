/* replay_fixture.h — QMP transcript fixtures (qmp-fixtures/README.md): parsing into a list of steps.
 *
 * A fixture is read whole and checked before anything is replayed, so a typo in a fixture is reported as
 * "file:line: what is wrong" instead of a confusing mismatch later.
 */
#ifndef SMMU_REPLAY_FIXTURE_H
#define SMMU_REPLAY_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "smmuctl/error.h"

enum replay_item_kind {
    REPLAY_ITEM_SEND,         /* `S: <json>` (CRLF appended) or `!raw` / `!raw-hex` (bytes exactly) */
    REPLAY_ITEM_EXPECT,       /* `C: <message>`: the client must send this */
    REPLAY_ITEM_DELAY,        /* `!delay MS` */
    REPLAY_ITEM_CLOSE,        /* `!close`: the server closes the connection */
    REPLAY_ITEM_EXPECT_CLOSE, /* `!expect-close`: the client must close the connection */
    REPLAY_ITEM_ACCEPT,       /* `!accept`: accept the next client connection (listening socket only) */
    REPLAY_ITEM_TIMEOUT,      /* `!timeout MS`: bound for every later wait on the client */
};

struct replay_item {
    enum replay_item_kind kind;
    int line;              /* 1-based line in the fixture file (of the C:/S: line, not of its directives) */
    char *text;            /* SEND: bytes to send, without CRLF; EXPECT: expected bytes (after !escaped) */
    size_t len;            /* length of text (may contain NUL bytes after !raw-hex) */
    json_t *json;          /* SEND (S: only): the parsed message; EXPECT: the expected JSON value, or NULL
                              when the line does not parse as JSON and is compared as trimmed text */
    bool raw;              /* SEND: from !raw / !raw-hex: no CRLF, never re-serialised */
    bool exact;            /* EXPECT: after !no-newline: exactly `len` bytes, no line terminator */
    int nfds;              /* EXPECT: number of fds that must come with it (from !fds, default 0) */
    int ms;                /* DELAY, TIMEOUT */
};

struct replay_fixture {
    char *path;            /* as given, for messages */
    struct replay_item *items;
    size_t n;
    bool needs_listener;   /* contains !accept */
};

/* Parse fixture text `data` (length len; need not be NUL-terminated); `name` is used in messages.
 * Returns 0 and *out (caller frees with replay_fixture_free), or -EINVAL with err->message
 * "name:line: what is wrong". */
int replay_fixture_parse(struct replay_fixture **out, const char *name, const char *data, size_t len,
                         struct smmu_error *err);
/* Read and parse a fixture file. -errno with "path: strerror" when it cannot be read. */
int replay_fixture_load(struct replay_fixture **out, const char *path, struct smmu_error *err);
void replay_fixture_free(struct replay_fixture *f);

/* Short name of a kind ("S:", "C:", "!delay", …) for reports. */
const char *replay_item_kind_name(enum replay_item_kind k);

#endif
