/* replay_fixture.c — parse QMP transcript fixtures (format: qmp-fixtures/README.md). */
#define _GNU_SOURCE
#include "replay_fixture.h"
#include "replay_match.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_MAX_FDS 253   /* SCM_MAX_FD: the kernel refuses more in one message */
#define REPLAY_MAX_MS 600000

/* Modifiers (!fds, !no-newline, !escaped) wait here for the C: line they apply to. */
struct pending_mods {
    int fds;          /* -1: none */
    bool no_newline;
    bool escaped;
    int line;         /* first modifier's line, for "not followed by a C: line" */
    const char *what; /* first modifier's name */
};

static int fx_err(struct smmu_error *err, const char *name, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fx_err(struct smmu_error *err, const char *name, int line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return smmu_error_set(err, -EINVAL, "%s:%d: %s", name, line, msg);
}

const char *replay_item_kind_name(enum replay_item_kind k)
{
    switch (k) {
    case REPLAY_ITEM_SEND: return "S:";
    case REPLAY_ITEM_EXPECT: return "C:";
    case REPLAY_ITEM_DELAY: return "!delay";
    case REPLAY_ITEM_CLOSE: return "!close";
    case REPLAY_ITEM_EXPECT_CLOSE: return "!expect-close";
    case REPLAY_ITEM_ACCEPT: return "!accept";
    case REPLAY_ITEM_TIMEOUT: return "!timeout";
    }
    return "?";
}

void replay_fixture_free(struct replay_fixture *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        free(f->items[i].text);
        json_decref(f->items[i].json);
    }
    free(f->items);
    free(f->path);
    free(f);
}

static struct replay_item *fx_add(struct replay_fixture *f, size_t *cap, enum replay_item_kind kind, int line)
{
    if (f->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        struct replay_item *n = realloc(f->items, ncap * sizeof(*n));
        if (!n)
            return NULL;
        f->items = n;
        *cap = ncap;
    }
    struct replay_item *it = &f->items[f->n++];
    memset(it, 0, sizeof(*it));
    it->kind = kind;
    it->line = line;
    return it;
}

/* A non-negative decimal integer that is the whole of `s` (surrounding blanks allowed), at most max. */
static int fx_parse_int(const char *s, int max, int *out)
{
    char *end;
    long v;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || v < 0 || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int fx_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode "hh hh…" (blanks between pairs allowed) into a new buffer. */
static int fx_parse_hex(const char *s, char **out, size_t *len)
{
    char *buf = malloc(strlen(s) / 2 + 1);
    size_t n = 0;
    if (!buf)
        return -ENOMEM;
    while (*s) {
        if (*s == ' ' || *s == '\t') {
            s++;
            continue;
        }
        int hi = fx_hexval((unsigned char)s[0]), lo = s[1] ? fx_hexval((unsigned char)s[1]) : -1;
        if (hi < 0 || lo < 0) {
            free(buf);
            return -EINVAL;
        }
        buf[n++] = (char)(hi << 4 | lo);
        s += 2;
    }
    if (n == 0) {
        free(buf);
        return -EINVAL;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* `\xHH` stands for the raw byte HH (how the recorded transcripts show bytes that are not text); every other
 * character, backslashes included, is literal. */
static char *fx_unescape(const char *s, size_t *len)
{
    size_t n = 0, sl = strlen(s);
    char *buf = malloc(sl + 1);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < sl; i++) {
        int hi, lo;
        if (s[i] == '\\' && s[i + 1] == 'x' && (hi = fx_hexval((unsigned char)s[i + 2])) >= 0 &&
            (lo = fx_hexval((unsigned char)s[i + 3])) >= 0) {
            buf[n++] = (char)(hi << 4 | lo);
            i += 3;
        } else {
            buf[n++] = s[i];
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static bool fx_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return false;
    return true;
}

/* The expected value of a C: line, or NULL when it is compared as text. Only objects, arrays and strings are
 * matched as JSON values: those are what the server can cut out of the byte stream without a line end. */
static json_t *fx_expect_json(const char *text, size_t len)
{
    json_t *v = replay_json_load(text, len, JSON_DECODE_ANY, NULL);
    if (v && !json_is_object(v) && !json_is_array(v) && !json_is_string(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static int fx_directive(struct replay_fixture *f, size_t *cap, struct pending_mods *pm, const char *name,
                        int line, const char *d, struct smmu_error *err)
{
    char word[32];
    size_t wl = strcspn(d, " \t");
    const char *arg = d + wl;
    struct replay_item *it;
    int v;

    if (wl >= sizeof(word))
        wl = sizeof(word) - 1;
    memcpy(word, d, wl);
    word[wl] = '\0';
    while (*arg == ' ' || *arg == '\t')
        arg++;

    bool is_mod = !strcmp(word, "fds") || !strcmp(word, "no-newline") || !strcmp(word, "escaped");
    if (!is_mod && pm->line)
        return fx_err(err, name, pm->line, "!%s must be followed by a C: line (found !%s at line %d)",
                      pm->what, word, line);
    if (is_mod && !pm->line) {
        pm->line = line;
        pm->what = !strcmp(word, "fds") ? "fds" : !strcmp(word, "escaped") ? "escaped" : "no-newline";
    }

    if (!strcmp(word, "fds")) {
        if (fx_parse_int(arg, REPLAY_MAX_FDS, &v) < 0)
            return fx_err(err, name, line, "!fds needs a count from 0 to %d, got '%s'", REPLAY_MAX_FDS, arg);
        if (pm->fds >= 0)
            return fx_err(err, name, line, "a second !fds for the same C: line");
        pm->fds = v;
        return 0;
    }
    if (!strcmp(word, "no-newline") || !strcmp(word, "escaped")) {
        if (*arg)
            return fx_err(err, name, line, "!%s takes no argument", word);
        if (word[0] == 'n')
            pm->no_newline = true;
        else
            pm->escaped = true;
        return 0;
    }
    if (!strcmp(word, "delay") || !strcmp(word, "timeout")) {
        bool delay = word[0] == 'd';
        if (fx_parse_int(arg, REPLAY_MAX_MS, &v) < 0 || (!delay && v == 0))
            return fx_err(err, name, line, "!%s needs milliseconds from %d to %d, got '%s'", word, delay ? 0 : 1,
                          REPLAY_MAX_MS, arg);
        if (!(it = fx_add(f, cap, delay ? REPLAY_ITEM_DELAY : REPLAY_ITEM_TIMEOUT, line)))
            return -ENOMEM;
        it->ms = v;
        return 0;
    }
    if (!strcmp(word, "raw")) {
        json_error_t je;
        json_t *s = json_loads(arg, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!s || !json_is_string(s) || json_string_length(s) == 0) {
            json_decref(s);
            return fx_err(err, name, line, "!raw needs a non-empty JSON string (\"…\" with JSON escapes)%s%s",
                          s ? "" : ": ", s ? "" : je.text);
        }
        if (!(it = fx_add(f, cap, REPLAY_ITEM_SEND, line))) {
            json_decref(s);
            return -ENOMEM;
        }
        it->len = json_string_length(s);
        it->text = malloc(it->len + 1);
        if (it->text) {
            memcpy(it->text, json_string_value(s), it->len);
            it->text[it->len] = '\0';
        }
        json_decref(s);
        it->raw = true;
        return it->text ? 0 : -ENOMEM;
    }
    if (!strcmp(word, "raw-hex")) {
        char *buf;
        size_t len;
        int r = fx_parse_hex(arg, &buf, &len);
        if (r == -ENOMEM)
            return r;
        if (r < 0)
            return fx_err(err, name, line, "!raw-hex needs pairs of hex digits (blanks allowed), got '%s'", arg);
        if (!(it = fx_add(f, cap, REPLAY_ITEM_SEND, line))) {
            free(buf);
            return -ENOMEM;
        }
        it->text = buf;
        it->len = len;
        it->raw = true;
        return 0;
    }
    static const struct { const char *w; enum replay_item_kind k; } plain[] = {
        {"close", REPLAY_ITEM_CLOSE}, {"expect-close", REPLAY_ITEM_EXPECT_CLOSE}, {"accept", REPLAY_ITEM_ACCEPT},
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (strcmp(word, plain[i].w))
            continue;
        if (*arg)
            return fx_err(err, name, line, "!%s takes no argument", word);
        if (!fx_add(f, cap, plain[i].k, line))
            return -ENOMEM;
        if (plain[i].k == REPLAY_ITEM_ACCEPT)
            f->needs_listener = true;
        return 0;
    }
    return fx_err(err, name, line,
                  "unknown directive '!%s' (known: !fds N, !no-newline, !escaped, !delay MS, !timeout MS, "
                  "!raw \"…\", !raw-hex HEX, !close, !expect-close, !accept)", word);
}

static int fx_line(struct replay_fixture *f, size_t *cap, struct pending_mods *pm, const char *name, int line,
                   const char *s, struct smmu_error *err)
{
    struct replay_item *it;
    const char *p = s;

    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p || fx_blank(p) || *p == '#')
        return 0;
    if (*p == '!')
        return fx_directive(f, cap, pm, name, line, p + 1, err);

    if ((s[0] == 'S' || s[0] == 'C') && s[1] == ':' && (s[2] == ' ' || s[2] == '\0')) {
        const char *body = s[2] ? s + 3 : s + 2;
        bool server = s[0] == 'S';
        if (fx_blank(body))
            return fx_err(err, name, line, "empty %c: line", s[0]);
        if (server && pm->line)
            return fx_err(err, name, pm->line, "!%s must be followed by a C: line (found S: at line %d)",
                          pm->what, line);
        if (!(it = fx_add(f, cap, server ? REPLAY_ITEM_SEND : REPLAY_ITEM_EXPECT, line)))
            return -ENOMEM;
        if (server) {
            json_error_t je;
            it->len = strlen(body);
            it->text = strdup(body);
            if (!it->text)
                return -ENOMEM;
            it->json = replay_json_load(body, it->len, 0, &je);
            if (it->json && !json_is_object(it->json)) {
                snprintf(je.text, sizeof(je.text), "not an object");
                je.column = 0;
                json_decref(it->json);
                it->json = NULL;
            }
            if (!it->json)
                return fx_err(err, name, line,
                              "S: line is not a JSON object (%s, column %d); use !raw for malformed output",
                              je.text, je.column + 3);
            return 0;
        }
        if (pm->escaped)
            it->text = fx_unescape(body, &it->len);
        else if ((it->text = strdup(body)))
            it->len = strlen(body);
        if (!it->text)
            return -ENOMEM;
        it->nfds = pm->fds < 0 ? 0 : pm->fds;
        it->exact = pm->no_newline;
        /* A line sent without its newline is a fragment: compared byte for byte, never as JSON. */
        it->json = it->exact ? NULL : fx_expect_json(it->text, it->len);
        *pm = (struct pending_mods){.fds = -1};
        return 0;
    }
    return fx_err(err, name, line, "expected 'S: ', 'C: ', '#', '!' or a blank line, got '%.40s'", s);
}

int replay_fixture_parse(struct replay_fixture **out, const char *name, const char *data, size_t len,
                         struct smmu_error *err)
{
    struct replay_fixture *f = calloc(1, sizeof(*f));
    struct pending_mods pm = {.fds = -1};
    size_t cap = 0, pos = 0;
    int line = 0, r = 0;

    if (!f || !(f->path = strdup(name))) {
        free(f);
        return smmu_error_set(err, -ENOMEM, "%s: out of memory", name);
    }
    while (pos < len && r == 0) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (data + pos)) : len - pos;
        char *l;
        line++;
        if (memchr(data + pos, '\0', ll)) {
            r = fx_err(err, name, line, "NUL byte in the line (use !raw-hex or !escaped)");
            break;
        }
        if (ll && data[pos + ll - 1] == '\r')
            ll--;
        if (!(l = strndup(data + pos, ll))) {
            r = -ENOMEM;
            break;
        }
        r = fx_line(f, &cap, &pm, name, line, l, err);
        free(l);
        pos += (nl ? (size_t)(nl - (data + pos)) + 1 : len - pos);
    }
    if (r == 0 && pm.line)
        r = fx_err(err, name, pm.line, "!%s must be followed by a C: line (found the end of the file)", pm.what);
    if (r == -ENOMEM)
        smmu_error_set(err, r, "%s:%d: out of memory", name, line);
    if (r < 0) {
        replay_fixture_free(f);
        return r;
    }
    *out = f;
    return 0;
}

int replay_fixture_load(struct replay_fixture **out, const char *path, struct smmu_error *err)
{
    FILE *fp = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0;
    int r;

    if (!fp)
        return smmu_error_set(err, -errno, "%s: %s", path, strerror(errno));
    for (;;) {
        if (cap - len < 65536) {
            char *n = realloc(data, cap + 65536);
            if (!n) {
                free(data);
                fclose(fp);
                return smmu_error_set(err, -ENOMEM, "%s: out of memory", path);
            }
            data = n;
            cap += 65536;
        }
        size_t got = fread(data + len, 1, cap - len, fp);
        len += got;
        if (got == 0)
            break;
    }
    if (ferror(fp)) {
        r = -EIO;
        smmu_error_set(err, r, "%s: read error", path);
    } else {
        r = replay_fixture_parse(out, path, data, len, err);
    }
    fclose(fp);
    free(data);
    return r;
}
