/* sim_json.c — QEMU's JSON lexer/streamer/parser behaviour and its output format (see sim_json.h). */
#include "sim_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok_type { T_ERROR, T_LCURLY, T_RCURLY, T_LSQUARE, T_RSQUARE, T_COLON, T_COMMA,
                T_STRING, T_INTEGER, T_FLOAT, T_KEYWORD };

struct token {
    enum tok_type type;
    char *text;
    size_t len;
    int line, col;
};

enum lex_state { L_START, L_STR, L_STR_ESC, L_KW, L_NEG, L_ZERO, L_INT, L_DOT, L_FRAC, L_EXP,
                 L_EXP_SIGN, L_EXP_DIG, L_RECOVERY };

struct sim_json_parser {
    sim_json_emit_cb cb;
    void *opaque;
    /* lexer */
    enum lex_state st;
    char quote;
    char *tok;
    size_t tok_len, tok_cap;
    int line, col, tok_line, tok_col;
    /* streamer */
    struct token *toks;
    size_t ntoks, cap_toks;
    int brace, bracket;
};

/* ---- parser over a complete token list ---- */

struct pctx {
    struct token *t;
    size_t n, pos;
    char err[1024];
    bool failed;
};

static void perr(struct pctx *c, const struct token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(struct pctx *c, const struct token *t, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    if (c->failed)
        return;
    c->failed = true;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (t)
        snprintf(c->err, sizeof(c->err), "%d:%d: JSON parse error, %s", t->line, t->col, msg);
    else
        snprintf(c->err, sizeof(c->err), "JSON parse error, %s", msg);
}

static struct token *peek(struct pctx *c) { return c->pos < c->n ? &c->t[c->pos] : NULL; }
static struct token *pop(struct pctx *c) { return c->pos < c->n ? &c->t[c->pos++] : NULL; }

/* Decode one UTF-8 sequence strictly (QEMU's mod_utf8_codepoint: overlong forms and surrogates are
 * invalid, except C0 80 which is NUL). Returns the code point or -1; *adv = bytes used. */
static int utf8_cp(const unsigned char *s, size_t avail, size_t *adv)
{
    unsigned c = s[0];
    int n, cp, min;
    if (c < 0x80) { *adv = 1; return (int)c; }
    if (c == 0xC0 && avail >= 2 && s[1] == 0x80) { *adv = 2; return 0; }
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; min = 0x10000; }
    else { *adv = 1; return -1; }
    if (avail < (size_t)n + 1) { *adv = 1; return -1; }
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) { *adv = (size_t)i; return -1; }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *adv = (size_t)n + 1;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    return cp;
}

static int put_utf8(char *o, int cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static int hex4(const char *p, const char *end)
{
    int v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= ch - '0';
        else if (ch >= 'a' && ch <= 'f') v |= ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') v |= ch - 'A' + 10;
        else return -1;
    }
    return v;
}

static json_t *parse_string(struct pctx *c, const struct token *t)
{
    const char *p = t->text + 1, *end = t->text + t->len - 1;
    char *out = malloc(t->len * 2 + 8);
    size_t o = 0;
    json_t *res;
    while (p < end) {
        if (*p == '\\') {
            const char *beg = p++;
            char e = *p++;
            switch (e) {
            case '"': out[o++] = '"'; break;
            case '\'': out[o++] = '\''; break;
            case '\\': out[o++] = '\\'; break;
            case '/': out[o++] = '/'; break;
            case 'b': out[o++] = '\b'; break;
            case 'f': out[o++] = '\f'; break;
            case 'n': out[o++] = '\n'; break;
            case 'r': out[o++] = '\r'; break;
            case 't': out[o++] = '\t'; break;
            case 'u': {
                int cp = hex4(p, end), tr;
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                    cp = 0x10000 + ((cp & 0x3FF) << 10);
                    tr = hex4(p + 2, end);
                    if (tr >= 0xDC00 && tr <= 0xDFFF) { cp |= tr & 0x3FF; p += 6; }
                    else cp = -1;
                }
                if (cp < 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                    perr(c, t, "%.*s is not a valid Unicode character", (int)(p - beg), beg);
                    free(out);
                    return NULL;
                }
                o += (size_t)put_utf8(out + o, cp);
                break;
            }
            default:
                perr(c, t, "invalid escape sequence in string");
                free(out);
                return NULL;
            }
        } else {
            size_t adv;
            int cp = utf8_cp((const unsigned char *)p, (size_t)(end - p), &adv);
            if (cp < 0) {
                perr(c, t, "invalid UTF-8 sequence in string");
                free(out);
                return NULL;
            }
            o += (size_t)put_utf8(out + o, cp);
            p += adv;
        }
    }
    res = json_stringn_nocheck(out, o);
    free(out);
    return res;
}

static json_t *parse_value(struct pctx *c);

/* QEMU 11's parser messages (checked against real QEMU): "expecting key", "expecting ':'", "expecting
 * value", "expected ',' or '}'", "expected ',' or ']'", "duplicate key" (at the value). */
static int parse_pair(struct pctx *c, json_t *obj)
{
    struct token *kt = peek(c), *t, *vt;
    json_t *key, *val;
    if (!kt) { perr(c, NULL, "premature EOI"); return -1; }
    if (kt->type != T_STRING) { perr(c, kt, "expecting key"); return -1; }
    key = parse_value(c);
    if (!key)
        return -1;
    t = pop(c);
    if (!t) { perr(c, NULL, "premature EOI"); json_decref(key); return -1; }
    if (t->type != T_COLON) { perr(c, t, "expecting ':'"); json_decref(key); return -1; }
    vt = peek(c);
    val = parse_value(c);
    if (!val) { json_decref(key); return -1; }
    if (json_object_get(obj, json_string_value(key))) {
        perr(c, vt, "duplicate key");
        json_decref(key);
        json_decref(val);
        return -1;
    }
    json_object_set_new_nocheck(obj, json_string_value(key), val);
    json_decref(key);
    return 0;
}

static json_t *parse_object(struct pctx *c)
{
    json_t *obj = json_object();
    struct token *t;
    pop(c);
    t = peek(c);
    if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    if (t->type == T_RCURLY) { pop(c); return obj; }
    if (parse_pair(c, obj) < 0) goto fail;
    t = pop(c);
    if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    while (t->type != T_RCURLY) {
        if (t->type != T_COMMA) { perr(c, t, "expected ',' or '}'"); goto fail; }
        if (parse_pair(c, obj) < 0) goto fail;
        t = pop(c);
        if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *parse_array(struct pctx *c)
{
    json_t *arr = json_array(), *v;
    struct token *t;
    pop(c);
    t = peek(c);
    if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    if (t->type == T_RSQUARE) { pop(c); return arr; }
    v = parse_value(c);
    if (!v) goto fail;
    json_array_append_new(arr, v);
    t = pop(c);
    if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    while (t->type != T_RSQUARE) {
        if (t->type != T_COMMA) { perr(c, t, "expected ',' or ']'"); goto fail; }
        v = parse_value(c);
        if (!v) goto fail;
        json_array_append_new(arr, v);
        t = pop(c);
        if (!t) { perr(c, NULL, "premature EOI"); goto fail; }
    }
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

static json_t *parse_value(struct pctx *c)
{
    struct token *t = peek(c);
    if (!t) { perr(c, NULL, "premature EOI"); return NULL; }
    switch (t->type) {
    case T_LCURLY: return parse_object(c);
    case T_LSQUARE: return parse_array(c);
    case T_STRING: pop(c); return parse_string(c, t);
    case T_INTEGER: {
        char *e;
        long long v;
        pop(c);
        errno = 0;
        v = strtoll(t->text, &e, 10);
        if (errno == ERANGE)
            return json_real(strtod(t->text, NULL));
        return json_integer(v);
    }
    case T_FLOAT: pop(c); return json_real(strtod(t->text, NULL));
    case T_KEYWORD:
        pop(c);
        if (!strcmp(t->text, "true")) return json_true();
        if (!strcmp(t->text, "false")) return json_false();
        if (!strcmp(t->text, "null")) return json_null();
        perr(c, t, "invalid keyword '%s'", t->text);
        return NULL;
    default:
        perr(c, t, "expecting value");
        return NULL;
    }
}

/* ---- streamer ---- */

static void free_tokens(struct sim_json_parser *p)
{
    for (size_t i = 0; i < p->ntoks; i++)
        free(p->toks[i].text);
    p->ntoks = 0;
    p->brace = p->bracket = 0;
}

static void process_token(struct sim_json_parser *p, enum tok_type type)
{
    struct token *t;
    char err[1200];
    if (type == T_ERROR) {
        snprintf(err, sizeof(err), "%d:%d: JSON parse error, stray '%.*s'", p->tok_line, p->tok_col,
                 (int)p->tok_len, p->tok);
        free_tokens(p);
        p->cb(NULL, err, p->opaque);
        return;
    }
    if (type == T_LCURLY) p->brace++;
    else if (type == T_RCURLY) p->brace--;
    else if (type == T_LSQUARE) p->bracket++;
    else if (type == T_RSQUARE) p->bracket--;
    if (p->ntoks == p->cap_toks) {
        p->cap_toks = p->cap_toks ? p->cap_toks * 2 : 64;
        p->toks = realloc(p->toks, p->cap_toks * sizeof(*p->toks));
    }
    t = &p->toks[p->ntoks++];
    t->type = type;
    t->text = strndup(p->tok, p->tok_len);
    t->len = p->tok_len;
    t->line = p->tok_line;
    t->col = p->tok_col;
    if ((p->brace > 0 || p->bracket > 0) && p->brace >= 0 && p->bracket >= 0)
        return;
    {
        struct pctx c = { .t = p->toks, .n = p->ntoks };
        json_t *v = parse_value(&c);
        if (!c.failed && c.pos < c.n) /* cannot happen with balanced groups, kept for safety */
            perr(&c, &c.t[c.pos], "expecting value");
        free_tokens(p);
        if (c.failed) {
            json_decref(v);
            p->cb(NULL, c.err, p->opaque);
        } else {
            p->cb(v, NULL, p->opaque);
            json_decref(v);
        }
    }
}

static void tok_add(struct sim_json_parser *p, char ch)
{
    if (p->tok_len + 2 > p->tok_cap) {
        p->tok_cap = p->tok_cap ? p->tok_cap * 2 : 256;
        p->tok = realloc(p->tok, p->tok_cap);
    }
    p->tok[p->tok_len++] = ch;
    p->tok[p->tok_len] = 0;
}

static void tok_start(struct sim_json_parser *p)
{
    p->tok_len = 0;
    if (p->tok)
        p->tok[0] = 0;
    p->tok_line = p->line;
    p->tok_col = p->col;
}

/* Emit the current token and go back to START; `type` T_ERROR means a lexical error (then RECOVERY). */
static void emit(struct sim_json_parser *p, enum tok_type type)
{
    process_token(p, type);
    p->tok_len = 0;
    p->st = type == T_ERROR ? L_RECOVERY : L_START;
}

static void lex_error(struct sim_json_parser *p, char ch)
{
    tok_add(p, ch);
    emit(p, T_ERROR);
}

static void feed_char(struct sim_json_parser *p, char ch)
{
    unsigned char uc = (unsigned char)ch;
    bool digit = ch >= '0' && ch <= '9';
    p->col++;
    for (;;) {
        switch (p->st) {
        case L_START:
            tok_start(p);
            switch (ch) {
            case ' ': case '\t': case '\r': case '\n': break;
            case '{': tok_add(p, ch); emit(p, T_LCURLY); break;
            case '}': tok_add(p, ch); emit(p, T_RCURLY); break;
            case '[': tok_add(p, ch); emit(p, T_LSQUARE); break;
            case ']': tok_add(p, ch); emit(p, T_RSQUARE); break;
            case ':': tok_add(p, ch); emit(p, T_COLON); break;
            case ',': tok_add(p, ch); emit(p, T_COMMA); break;
            case '"': case '\'': p->quote = ch; tok_add(p, ch); p->st = L_STR; break;
            case '-': tok_add(p, ch); p->st = L_NEG; break;
            case '0': tok_add(p, ch); p->st = L_ZERO; break;
            default:
                if (ch >= 'a' && ch <= 'z') { tok_add(p, ch); p->st = L_KW; }
                else if (digit) { tok_add(p, ch); p->st = L_INT; }
                else lex_error(p, ch);
            }
            goto done;
        case L_STR:
            if (ch == p->quote) { tok_add(p, ch); emit(p, T_STRING); }
            else if (ch == '\\') { tok_add(p, ch); p->st = L_STR_ESC; }
            else if (uc >= 0x20 && uc <= 0xFD) tok_add(p, ch);
            else lex_error(p, ch);
            goto done;
        case L_STR_ESC:
            if (uc >= 0x20 && uc <= 0xFD) { tok_add(p, ch); p->st = L_STR; }
            else lex_error(p, ch);
            goto done;
        case L_KW:
            if (ch >= 'a' && ch <= 'z') { tok_add(p, ch); goto done; }
            emit(p, T_KEYWORD);
            continue; /* lookahead: reprocess ch */
        case L_NEG:
            if (ch == '0') { tok_add(p, ch); p->st = L_ZERO; }
            else if (digit) { tok_add(p, ch); p->st = L_INT; }
            else lex_error(p, ch);
            goto done;
        case L_ZERO:
            if (ch == '.') { tok_add(p, ch); p->st = L_DOT; goto done; }
            if (ch == 'e' || ch == 'E') { tok_add(p, ch); p->st = L_EXP; goto done; }
            if (digit) { lex_error(p, ch); goto done; }
            emit(p, T_INTEGER);
            continue;
        case L_INT:
            if (digit) { tok_add(p, ch); goto done; }
            if (ch == '.') { tok_add(p, ch); p->st = L_DOT; goto done; }
            if (ch == 'e' || ch == 'E') { tok_add(p, ch); p->st = L_EXP; goto done; }
            emit(p, T_INTEGER);
            continue;
        case L_DOT:
            if (digit) { tok_add(p, ch); p->st = L_FRAC; }
            else lex_error(p, ch);
            goto done;
        case L_FRAC:
            if (digit) { tok_add(p, ch); goto done; }
            if (ch == 'e' || ch == 'E') { tok_add(p, ch); p->st = L_EXP; goto done; }
            emit(p, T_FLOAT);
            continue;
        case L_EXP:
            if (ch == '+' || ch == '-') { tok_add(p, ch); p->st = L_EXP_SIGN; }
            else if (digit) { tok_add(p, ch); p->st = L_EXP_DIG; }
            else lex_error(p, ch);
            goto done;
        case L_EXP_SIGN:
            if (digit) { tok_add(p, ch); p->st = L_EXP_DIG; }
            else lex_error(p, ch);
            goto done;
        case L_EXP_DIG:
            if (digit) { tok_add(p, ch); goto done; }
            emit(p, T_FLOAT);
            continue;
        case L_RECOVERY:
            /* QEMU resynchronises on structural characters, control characters other than TAB, and the
             * bytes 0xFE/0xFF, and re-reads that character in the start state. */
            if ((uc < 0x20 && ch != '\t') || uc >= 0xFE || strchr("[]{}:,", ch)) {
                p->st = L_START;
                continue;
            }
            goto done;
        }
    }
done:
    if (ch == '\n') {
        p->line++;
        p->col = 0;
    }
}

struct sim_json_parser *sim_json_parser_new(sim_json_emit_cb cb, void *opaque)
{
    struct sim_json_parser *p = calloc(1, sizeof(*p));
    p->cb = cb;
    p->opaque = opaque;
    p->line = 1;
    p->st = L_START;
    return p;
}

void sim_json_parser_free(struct sim_json_parser *p)
{
    if (!p)
        return;
    free_tokens(p);
    free(p->toks);
    free(p->tok);
    free(p);
}

void sim_json_parser_feed(struct sim_json_parser *p, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        feed_char(p, buf[i]);
}

int sim_json_parser_pending(const struct sim_json_parser *p)
{
    return p->ntoks > 0 || (p->st != L_START && p->st != L_RECOVERY);
}

/* ---- one-shot parse ---- */

struct one { json_t *v; int n; bool err; };

static void one_cb(json_t *v, const char *err, void *opaque)
{
    struct one *o = opaque;
    o->n++;
    if (err || o->v) { o->err = true; return; }
    o->v = json_incref(v);
}

json_t *sim_json_loads(const char *text, size_t len)
{
    struct one o = { 0 };
    struct sim_json_parser *p = sim_json_parser_new(one_cb, &o);
    sim_json_parser_feed(p, text, len);
    sim_json_parser_feed(p, "\n", 1); /* terminate a trailing number or keyword */
    if (sim_json_parser_pending(p) || o.err) {
        json_decref(o.v);
        o.v = NULL;
    }
    sim_json_parser_free(p);
    return o.v;
}

json_t *sim_json_u64max(void)
{
    return json_real(18446744073709551616.0);
}

json_t *sim_json_u64(uint64_t v)
{
    if (v == UINT64_MAX)
        return sim_json_u64max();
    return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

/* ---- serialiser ---- */

struct buf { char *s; size_t len, cap; };

static void bput(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap)
            b->cap = b->cap ? b->cap * 2 : 256;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void bputs(struct buf *b, const char *s) { bput(b, s, strlen(s)); }

static void put_str(struct buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    char tmp[16];
    bputs(b, "\"");
    while (p < end) {
        size_t adv;
        int cp = utf8_cp(p, (size_t)(end - p), &adv);
        p += adv;
        switch (cp) {
        case '"': bputs(b, "\\\""); break;
        case '\\': bputs(b, "\\\\"); break;
        case '\b': bputs(b, "\\b"); break;
        case '\f': bputs(b, "\\f"); break;
        case '\n': bputs(b, "\\n"); break;
        case '\r': bputs(b, "\\r"); break;
        case '\t': bputs(b, "\\t"); break;
        default:
            if (cp < 0)
                cp = 0xFFFD;
            if (cp > 0xFFFF) {
                snprintf(tmp, sizeof(tmp), "\\u%04X\\u%04X", 0xD800 + ((cp - 0x10000) >> 10),
                         0xDC00 + ((cp - 0x10000) & 0x3FF));
                bputs(b, tmp);
            } else if (cp < 0x20 || cp >= 0x7F) {
                snprintf(tmp, sizeof(tmp), "\\u%04X", cp);
                bputs(b, tmp);
            } else {
                tmp[0] = (char)cp;
                bput(b, tmp, 1);
            }
        }
    }
    bputs(b, "\"");
}

static void put_val(struct buf *b, const json_t *v)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        bool first = true;
        bputs(b, "{");
        json_object_foreach((json_t *)v, k, x) {
            if (!first)
                bputs(b, ", ");
            first = false;
            put_str(b, k, strlen(k));
            bputs(b, ": ");
            put_val(b, x);
        }
        bputs(b, "}");
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        bputs(b, "[");
        json_array_foreach(v, i, x) {
            if (i)
                bputs(b, ", ");
            put_val(b, x);
        }
        bputs(b, "]");
        break;
    }
    case JSON_STRING: put_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        bputs(b, tmp);
        break;
    case JSON_REAL:
        if (json_real_value(v) == 18446744073709551616.0)
            bputs(b, "18446744073709551615");
        else if (json_real_value(v) >= 9223372036854775808.0 && json_real_value(v) < 18446744073709551616.0 &&
                 json_real_value(v) == (double)(uint64_t)json_real_value(v)) {
            /* a uint64 above INT64_MAX (what the parser made of QEMU's integer): printed as QEMU does */
            snprintf(tmp, sizeof(tmp), "%" PRIu64, (uint64_t)json_real_value(v));
            bputs(b, tmp);
        } else {
            snprintf(tmp, sizeof(tmp), "%.17g", json_real_value(v));
            bputs(b, tmp);
        }
        break;
    case JSON_TRUE: bputs(b, "true"); break;
    case JSON_FALSE: bputs(b, "false"); break;
    case JSON_NULL: bputs(b, "null"); break;
    }
}

char *sim_json_dumps(const json_t *v)
{
    struct buf b = { 0 };
    put_val(&b, v);
    return b.s;
}
