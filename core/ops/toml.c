/*
 * toml.c - the strict TOML subset parser described in toml.h.
 *
 * One pass over the input after a UTF-8 check. The document loop reads one construct per
 * line (blank or comment, [header], [[header]], key = value) into the current table.
 * A value is built in a local struct wzp_toml_value and linked into the tree only when it
 * is complete, so an error frees that partial value and then the whole document.
 * Tables live behind pointers, so the current-table pointer survives array growth.
 */
#include "toml.h"

#include "buf.h"
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

struct wzp_toml {
    struct wzp_toml_table root;
};

struct parser {
    const unsigned char *p; /* next byte */
    const unsigned char *end;
    int line;
    struct wzp_toml *doc;
    struct wzp_toml_table *cur; /* where key = value pairs go */
    size_t nvalues;
    int err_line;
    char *msg;
    size_t msglen;
};

/* ---- errors and character helpers ---- */

static int fail(struct parser *ps, int line, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct parser *ps, int line, int status, const char *fmt, ...)
{
    ps->err_line = line;
    if (ps->msglen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->msg, ps->msglen, fmt, ap);
        va_end(ap);
    }
    return status;
}

static int fail_nomem(struct parser *ps)
{
    return fail(ps, ps->line, WZP_ENOMEM, "out of memory");
}

static int peek_at(const struct parser *ps, size_t k)
{
    return (size_t)(ps->end - ps->p) > k ? ps->p[k] : -1;
}

static int peek(const struct parser *ps)
{
    return peek_at(ps, 0);
}

/* A human description of character c (-1 = end of input) for error messages. */
static const char *show(int c, char *buf, size_t size)
{
    if (c < 0)
        return "the end of the file";
    if (c == '\n')
        return "the end of the line";
    if (c == '\r')
        return "a carriage return without a line feed";
    if (c == ' ')
        return "a space";
    if (c == '\t')
        return "a tab";
    if (c >= 0x80)
        return "a non-ASCII character";
    if (c < 0x20 || c == 0x7f)
        snprintf(buf, size, "control character U+%04X", (unsigned)c);
    else
        snprintf(buf, size, "'%c'", c);
    return buf;
}

#define SHOW(c) show((c), (char[32]){0}, 32)

static bool is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_bare(int c)
{
    return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

static const char *type_with_article(enum wzp_toml_type t)
{
    static const char *const names[] = {"a value",   "a string", "an integer", "a float",
                                        "a boolean", "an array", "a table"};
    return (unsigned)t < WZP_ARRAY_LEN(names) ? names[t] : "a value";
}

/* ---- UTF-8 ---- */

/* Length (1..4) of the valid UTF-8 sequence at p, or 0 if it is invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int check_encoding(struct parser *ps)
{
    int line = 1;
    for (const unsigned char *p = ps->p; p < ps->end;) {
        if (*p == 0)
            return fail(ps, line, WZP_EINVAL, "NUL byte (a config file must be UTF-8 text)");
        if (*p == '\n')
            line++;
        size_t n = utf8_seq(p, ps->end);
        if (!n)
            return fail(ps, line, WZP_EINVAL, "invalid UTF-8 (a config file must be UTF-8 text)");
        p += n;
    }
    return WZP_OK;
}

static int append_utf8(struct parser *ps, struct wzp_buf *b, uint32_t cp)
{
    uint8_t out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (uint8_t)cp, n = 1;
    } else if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | (cp >> 6)), n = 2;
    } else if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (cp >> 12)), n = 3;
    } else {
        out[0] = (uint8_t)(0xf0 | (cp >> 18)), n = 4;
    }
    for (size_t i = 1; i < n; i++)
        out[i] = (uint8_t)(0x80 | ((cp >> (6 * (n - 1 - i))) & 0x3f));
    return wzp_buf_append(b, out, n) ? fail_nomem(ps) : WZP_OK;
}

/* ---- whitespace, comments, line ends ---- */

static void skip_ws(struct parser *ps)
{
    while (peek(ps) == ' ' || peek(ps) == '\t')
        ps->p++;
}

/* Consume a line end (LF or CRLF); false if there is none here. */
static bool eat_newline(struct parser *ps)
{
    if (peek(ps) == '\n') {
        ps->p++;
    } else if (peek(ps) == '\r' && peek_at(ps, 1) == '\n') {
        ps->p += 2;
    } else {
        return false;
    }
    ps->line++;
    return true;
}

static bool at_line_end(const struct parser *ps)
{
    int c = peek(ps);
    return c < 0 || c == '\n' || (c == '\r' && peek_at(ps, 1) == '\n');
}

/* Skip a comment from its '#' up to (not including) the line end. */
static int skip_comment(struct parser *ps)
{
    ps->p++;
    while (!at_line_end(ps)) {
        int c = peek(ps);
        if (is_control(c))
            return fail(ps, ps->line, WZP_EINVAL, "%s in a comment (only tabs are allowed)",
                        SHOW(c));
        ps->p++;
    }
    return WZP_OK;
}

/* Spaces, an optional comment, then a line end or the end of the input. */
static int end_of_line(struct parser *ps, const char *after)
{
    skip_ws(ps);
    if (peek(ps) == '#') {
        int rc = skip_comment(ps);
        if (rc)
            return rc;
    }
    if (peek(ps) < 0 || eat_newline(ps))
        return WZP_OK;
    if (peek(ps) == '\r')
        return fail(ps, ps->line, WZP_EINVAL,
                    "carriage return without a line feed (lines must end in LF or CRLF)");
    return fail(ps, ps->line, WZP_EINVAL,
                "unexpected %s%s%s (expected a comment or the end of the line)", SHOW(peek(ps)),
                after ? " after " : "", after ? after : "");
}

/* Spaces, comments and line ends between array items. */
static int skip_array_space(struct parser *ps)
{
    for (;;) {
        skip_ws(ps);
        if (peek(ps) == '#') {
            int rc = skip_comment(ps);
            if (rc)
                return rc;
        }
        if (!eat_newline(ps))
            return WZP_OK;
    }
}

/* ---- tree building ---- */

static void value_free(struct wzp_toml_value *v);

static void table_clear(struct wzp_toml_table *t)
{
    for (size_t i = 0; i < t->len; i++) {
        free(t->kvs[i].key);
        value_free(&t->kvs[i].value);
    }
    free(t->kvs);
}

static void value_free(struct wzp_toml_value *v)
{
    switch (v->type) {
    case WZP_TOML_STRING:
        free(v->u.str.ptr);
        break;
    case WZP_TOML_ARRAY:
        for (size_t i = 0; i < v->u.array.len; i++)
            value_free(&v->u.array.items[i]);
        free(v->u.array.items);
        break;
    case WZP_TOML_TABLE:
        table_clear(v->u.table);
        free(v->u.table);
        break;
    default:
        break;
    }
    memset(v, 0, sizeof *v);
}

static int count_value(struct parser *ps, int line)
{
    if (++ps->nvalues > WZP_TOML_MAX_VALUES)
        return fail(ps, line, WZP_ETOOBIG, "too many values in the document (the limit is %d)",
                    WZP_TOML_MAX_VALUES);
    return WZP_OK;
}

static struct wzp_toml_kv *find_kv(const struct wzp_toml_table *t, const char *key)
{
    for (size_t i = 0; i < t->len; i++)
        if (strcmp(t->kvs[i].key, key) == 0)
            return &t->kvs[i];
    return NULL;
}

/* Append key = *v to t. Takes ownership of key and *v, also when it fails. */
static int table_add(struct parser *ps, struct wzp_toml_table *t, char *key, int line,
                     struct wzp_toml_value *v)
{
    int rc = WZP_OK;
    if (t->len >= WZP_TOML_MAX_KEYS) {
        rc = fail(ps, line, WZP_ETOOBIG, "too many keys in one table (the limit is %d)",
                  WZP_TOML_MAX_KEYS);
    } else if (t->len == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        struct wzp_toml_kv *kvs = realloc(t->kvs, cap * sizeof *kvs);
        if (kvs) {
            t->kvs = kvs;
            t->cap = cap;
        } else {
            rc = fail_nomem(ps);
        }
    }
    if (rc) {
        free(key);
        value_free(v);
        return rc;
    }
    t->kvs[t->len++] = (struct wzp_toml_kv){.key = key, .line = line, .value = *v};
    return WZP_OK;
}

/* Append *v to a. Takes ownership of *v, also when it fails. */
static int array_push(struct parser *ps, struct wzp_toml_array *a, struct wzp_toml_value *v)
{
    int rc = WZP_OK;
    if (a->len >= WZP_TOML_MAX_ARRAY) {
        rc = fail(ps, v->line, WZP_ETOOBIG, "too many items in one array (the limit is %d)",
                  WZP_TOML_MAX_ARRAY);
    } else if (a->len == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 4;
        struct wzp_toml_value *items = realloc(a->items, cap * sizeof *items);
        if (items) {
            a->items = items;
            a->cap = cap;
        } else {
            rc = fail_nomem(ps);
        }
    }
    if (rc) {
        value_free(v);
        return rc;
    }
    a->items[a->len++] = *v;
    return WZP_OK;
}

static int dup_key(struct parser *ps, const char *key, char **out)
{
    *out = strdup(key);
    return *out ? WZP_OK : fail_nomem(ps);
}

/* A new empty table at parent[key] (key is copied); *out points at it. */
static int add_table(struct parser *ps, struct wzp_toml_table *parent, const char *key, int line,
                     bool defined, struct wzp_toml_table **out)
{
    char *k;
    int rc = count_value(ps, line);
    if (rc || (rc = dup_key(ps, key, &k)))
        return rc;
    struct wzp_toml_table *t = calloc(1, sizeof *t);
    if (!t) {
        free(k);
        return fail_nomem(ps);
    }
    t->line = line;
    t->defined = defined;
    struct wzp_toml_value v = {.type = WZP_TOML_TABLE, .line = line, .u.table = t};
    rc = table_add(ps, parent, k, line, &v);
    if (!rc)
        *out = t;
    return rc;
}

/* ---- strings and keys ---- */

static int parse_escape(struct parser *ps, struct wzp_buf *b)
{
    static const char from[] = "btnfr\"\\", to[] = "\b\t\n\f\r\"\\";
    int c = peek_at(ps, 1);
    const char *hit = c > 0 ? strchr(from, c) : NULL;
    if (hit) {
        ps->p += 2;
        return wzp_buf_append(b, &to[hit - from], 1) ? fail_nomem(ps) : WZP_OK;
    }
    if (c != 'u' && c != 'U') {
        if (c > 0x20 && c < 0x7f)
            return fail(ps, ps->line, WZP_EINVAL,
                        "invalid escape '\\%c' (expected \\b \\t \\n \\f \\r \\\" \\\\ "
                        "\\uXXXX or \\UXXXXXXXX; write a backslash as \\\\)",
                        c);
        return fail(ps, ps->line, WZP_EINVAL,
                    "invalid escape: '\\' followed by %s (write a backslash as \\\\)", SHOW(c));
    }
    size_t n = c == 'u' ? 4 : 8;
    uint32_t cp = 0;
    for (size_t i = 0; i < n; i++) {
        int h = wzp_hex_digit(peek_at(ps, 2 + i));
        if (h < 0)
            return fail(ps, ps->line, WZP_EINVAL, "escape \\%c needs exactly %zu hex digits", c, n);
        cp = cp * 16 + (uint32_t)h;
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return fail(ps, ps->line, WZP_EINVAL,
                    "escape \\%c%0*X is not a Unicode scalar value (surrogates and values "
                    "above 10FFFF are not allowed)",
                    c, (int)n, (unsigned)cp);
    ps->p += 2 + n;
    return append_utf8(ps, b, cp);
}

/* Plain characters of a basic string: not a quote, backslash, control or line end. */
static bool is_plain_basic(int c)
{
    return c >= 0 && c != '"' && c != '\\' && !is_control(c);
}

/* "..." (one line) into a new NUL-terminated string. */
static int parse_basic(struct parser *ps, char **out, size_t *outlen)
{
    struct wzp_buf b = WZP_BUF_INIT;
    int rc = WZP_OK;
    ps->p++;
    while (peek(ps) != '"') {
        int c = peek(ps);
        const unsigned char *run = ps->p;
        while (is_plain_basic(peek(ps)))
            ps->p++;
        if (ps->p > run) {
            rc = wzp_buf_append(&b, run, (size_t)(ps->p - run)) ? fail_nomem(ps) : WZP_OK;
        } else if (c == '\\') {
            rc = parse_escape(ps, &b);
        } else if (c < 0 || c == '\n' || c == '\r') {
            rc = fail(ps, ps->line, WZP_EINVAL,
                      "string is not closed on this line (expected '\"'; multi-line strings "
                      "are not supported)");
        } else {
            rc = fail(ps, ps->line, WZP_EINVAL, "%s in a string must be escaped as \\u%04X",
                      SHOW(c), (unsigned)c);
        }
        if (rc) {
            wzp_buf_free(&b);
            return rc;
        }
    }
    ps->p++;
    *outlen = b.len;
    if (wzp_buf_append(&b, "", 1)) {
        wzp_buf_free(&b);
        return fail_nomem(ps);
    }
    *out = (char *)b.data;
    return WZP_OK;
}

/* '...' (one line, no escapes) into a new NUL-terminated string. */
static int parse_literal(struct parser *ps, char **out, size_t *outlen)
{
    const unsigned char *start = ++ps->p;
    for (;;) {
        int c = peek(ps);
        if (c == '\'')
            break;
        if (c < 0 || c == '\n' || c == '\r')
            return fail(ps, ps->line, WZP_EINVAL,
                        "literal string is not closed on this line (expected \"'\"; multi-line "
                        "strings are not supported)");
        if (is_control(c))
            return fail(ps, ps->line, WZP_EINVAL,
                        "%s is not allowed in a '...' string (use \"...\" with an escape)",
                        SHOW(c));
        ps->p++;
    }
    size_t len = (size_t)(ps->p - start);
    ps->p++;
    *out = malloc(len + 1);
    if (!*out)
        return fail_nomem(ps);
    memcpy(*out, start, len);
    (*out)[len] = '\0';
    *outlen = len;
    return WZP_OK;
}

static bool at_triple_quote(const struct parser *ps)
{
    int q = peek(ps);
    return peek_at(ps, 1) == q && peek_at(ps, 2) == q;
}

static int parse_quoted(struct parser *ps, char **out, size_t *len)
{
    return peek(ps) == '"' ? parse_basic(ps, out, len) : parse_literal(ps, out, len);
}

/* A bare or quoted key into a new string; what names it in errors ("a key"). */
static int parse_key(struct parser *ps, const char *what, char **out)
{
    int c = peek(ps);
    size_t len;
    if (c == '"' || c == '\'') {
        if (at_triple_quote(ps))
            return fail(ps, ps->line, WZP_EINVAL, "multi-line strings cannot be keys");
        int rc = parse_quoted(ps, out, &len);
        if (rc)
            return rc;
        if (strlen(*out) != len) {
            free(*out);
            return fail(ps, ps->line, WZP_EINVAL, "keys must not contain NUL (\\u0000)");
        }
        return WZP_OK;
    }
    const unsigned char *start = ps->p;
    while (is_bare(peek(ps)))
        ps->p++;
    len = (size_t)(ps->p - start);
    if (!len)
        return fail(ps, ps->line, WZP_EINVAL,
                    "expected %s (letters, digits, '_' and '-', or a quoted string), found %s",
                    what, SHOW(c));
    *out = malloc(len + 1);
    if (!*out)
        return fail_nomem(ps);
    memcpy(*out, start, len);
    (*out)[len] = '\0';
    return WZP_OK;
}

/* ---- numbers and other bare values ---- */

/* Digits with single '_' between digits, from *i; false if there is no such run. */
static bool scan_digits(const char *s, size_t n, size_t *i)
{
    if (*i >= n || !is_digit(s[*i]))
        return false;
    while (*i < n) {
        if (is_digit(s[*i]))
            (*i)++;
        else if (s[*i] == '_' && *i + 1 < n && is_digit(s[*i + 1]))
            (*i)++;
        else
            break;
    }
    return true;
}

static int bad_number(struct parser *ps, const char *tok, size_t n, const char *why)
{
    return fail(ps, ps->line, WZP_EINVAL, "invalid number '%.*s': %s", (int)WZP_MIN(n, 40), tok,
                why);
}

static int convert_integer(struct parser *ps, const char *tok, size_t n, int64_t *out)
{
    bool neg = tok[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, mag = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(tok[i]))
            continue;
        uint64_t d = (uint64_t)(tok[i] - '0');
        if (mag > (limit - d) / 10)
            return fail(ps, ps->line, WZP_EINVAL,
                        "integer '%.*s' is out of range (it must fit in 64 bits)",
                        (int)WZP_MIN(n, 40), tok);
        mag = mag * 10 + d;
    }
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return WZP_OK;
}

static int convert_float(struct parser *ps, const char *tok, size_t n, double *out)
{
    char buf[128];
    size_t len = 0;
    if (n >= sizeof buf)
        return bad_number(ps, tok, n, "too many digits");
    for (size_t i = 0; i < n; i++)
        if (tok[i] != '_')
            buf[len++] = tok[i];
    buf[len] = '\0';
    *out = strtod(buf, NULL);
    if (!isfinite(*out))
        return fail(ps, ps->line, WZP_EINVAL, "float '%.*s' is out of range", (int)WZP_MIN(n, 40),
                    tok);
    return WZP_OK;
}

/* A decimal integer or float: [+-] int [. digits] [e [+-] digits]. */
static int parse_number(struct parser *ps, const char *tok, size_t n, struct wzp_toml_value *v)
{
    size_t i = (tok[0] == '+' || tok[0] == '-') ? 1 : 0, start = i;
    bool is_float = false;
    if (!scan_digits(tok, n, &i))
        return bad_number(ps, tok, n, "expected digits");
    if (tok[start] == '0' && i - start > 1)
        return bad_number(ps, tok, n, "leading zeros are not allowed");
    if (i < n && tok[i] == '.') {
        i++;
        if (!scan_digits(tok, n, &i))
            return bad_number(ps, tok, n, "expected digits after '.'");
        is_float = true;
    }
    if (i < n && (tok[i] == 'e' || tok[i] == 'E')) {
        i++;
        if (i < n && (tok[i] == '+' || tok[i] == '-'))
            i++;
        if (!scan_digits(tok, n, &i))
            return bad_number(ps, tok, n, "expected digits in the exponent");
        is_float = true;
    }
    if (i != n)
        return bad_number(ps, tok, n, "expected digits with '_' only between digits");
    if (is_float) {
        v->type = WZP_TOML_FLOAT;
        return convert_float(ps, tok, n, &v->u.real);
    }
    v->type = WZP_TOML_INTEGER;
    return convert_integer(ps, tok, n, &v->u.integer);
}

static bool token_is(const char *tok, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(tok, word, n) == 0;
}

static bool looks_like_datetime(const char *tok, size_t n)
{
    if (memchr(tok, ':', n))
        return true;
    return n >= 5 && is_digit(tok[0]) && is_digit(tok[1]) && is_digit(tok[2]) && is_digit(tok[3]) &&
           tok[4] == '-';
}

static bool has_radix_prefix(const char *tok, size_t n)
{
    size_t i = (tok[0] == '+' || tok[0] == '-') ? 1 : 0;
    return n >= i + 2 && tok[i] == '0' && strchr("xob", tok[i + 1]);
}

static bool is_token_char(int c)
{
    return is_bare(c) || c == '+' || c == '.' || c == ':';
}

/* true, false or a number: everything that is not quoted or bracketed. */
static int parse_bare_value(struct parser *ps, struct wzp_toml_value *v)
{
    const char *tok = (const char *)ps->p;
    size_t n = 0;
    while (is_token_char(peek_at(ps, n)))
        n++;
    int shown = (int)WZP_MIN(n, 40);
    if (n == 0)
        return fail(ps, ps->line, WZP_EINVAL,
                    "expected a value (a \"string\", a number, true, false or an [array]), "
                    "found %s",
                    SHOW(peek(ps)));
    ps->p += n;
    if (token_is(tok, n, "true") || token_is(tok, n, "false")) {
        v->type = WZP_TOML_BOOL;
        v->u.boolean = tok[0] == 't';
        return WZP_OK;
    }
    const char *special = tok + (tok[0] == '+' || tok[0] == '-');
    size_t sn = n - (size_t)(special - tok);
    if (token_is(special, sn, "inf") || token_is(special, sn, "nan"))
        return fail(ps, ps->line, WZP_EINVAL, "inf and nan are not supported");
    if (is_alpha(tok[0]))
        return fail(ps, ps->line, WZP_EINVAL,
                    "unquoted text '%.*s' (strings must be quoted: \"%.*s\"; booleans are "
                    "lower-case true or false)",
                    shown, tok, shown, tok);
    if (looks_like_datetime(tok, n))
        return fail(ps, ps->line, WZP_EINVAL,
                    "dates and times are not supported ('%.*s'; quote it to make a string)", shown,
                    tok);
    if (has_radix_prefix(tok, n))
        return fail(ps, ps->line, WZP_EINVAL,
                    "hexadecimal, octal and binary integers are not supported ('%.*s'); write "
                    "a decimal number",
                    shown, tok);
    return parse_number(ps, tok, n, v);
}

/* ---- values ---- */

static int parse_value(struct parser *ps, struct wzp_toml_value *v, int depth);

static int parse_string_value(struct parser *ps, struct wzp_toml_value *v)
{
    if (at_triple_quote(ps))
        return fail(ps, ps->line, WZP_EINVAL,
                    "multi-line strings (\"\"\" or ''') are not supported; use one line with "
                    "\\n escapes");
    int rc = parse_quoted(ps, &v->u.str.ptr, &v->u.str.len);
    if (!rc)
        v->type = WZP_TOML_STRING;
    return rc;
}

static int parse_array(struct parser *ps, struct wzp_toml_value *v, int depth)
{
    int open_line = ps->line;
    if (depth >= WZP_TOML_MAX_DEPTH)
        return fail(ps, ps->line, WZP_ETOOBIG, "arrays are nested more than %d deep",
                    WZP_TOML_MAX_DEPTH);
    ps->p++;
    v->type = WZP_TOML_ARRAY;
    for (;;) {
        int rc = skip_array_space(ps);
        if (rc)
            return rc;
        if (peek(ps) == ']')
            break;
        if (peek(ps) < 0)
            return fail(ps, open_line, WZP_EINVAL, "array is never closed (expected ']')");
        struct wzp_toml_value item = {0};
        rc = parse_value(ps, &item, depth + 1);
        if (!rc)
            rc = array_push(ps, &v->u.array, &item);
        else
            value_free(&item);
        if (rc || (rc = skip_array_space(ps)))
            return rc;
        if (peek(ps) == ']')
            break;
        if (peek(ps) < 0)
            return fail(ps, open_line, WZP_EINVAL, "array is never closed (expected ']')");
        if (peek(ps) != ',')
            return fail(ps, ps->line, WZP_EINVAL, "expected ',' or ']' in the array, found %s",
                        SHOW(peek(ps)));
        ps->p++;
    }
    ps->p++;
    return WZP_OK;
}

/* On failure *v may hold a partial value: the caller frees it with value_free(). */
static int parse_value(struct parser *ps, struct wzp_toml_value *v, int depth)
{
    int c = peek(ps);
    int rc = count_value(ps, ps->line);
    if (rc)
        return rc;
    v->line = ps->line;
    if (c == '"' || c == '\'')
        return parse_string_value(ps, v);
    if (c == '[')
        return parse_array(ps, v, depth);
    if (c == '{')
        return fail(ps, ps->line, WZP_EINVAL,
                    "inline tables ({...}) are not supported; use a [table] header");
    return parse_bare_value(ps, v);
}

/* ---- key = value ---- */

/* Error for "a.b = ...": start is where the key began, key its first part. */
static int dotted_key(struct parser *ps, const unsigned char *start, const char *key)
{
    const unsigned char *end = start;
    while (end < ps->end && *end != '=' && *end != '\n' && *end != '\r')
        end++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return fail(ps, ps->line, WZP_EINVAL,
                "dotted key '%.*s' is not supported: put the key under a [%.64s] table header",
                (int)WZP_MIN(end - start, 64), (const char *)start, key);
}

static int parse_keyval(struct parser *ps)
{
    int line = ps->line, rc;
    const unsigned char *start = ps->p;
    char *key;
    if ((rc = parse_key(ps, "a key", &key)))
        return rc;
    skip_ws(ps);
    struct wzp_toml_kv *old = find_kv(ps->cur, key);
    if (peek(ps) == '.')
        rc = dotted_key(ps, start, key);
    else if (peek(ps) != '=')
        rc = fail(ps, line, WZP_EINVAL, "expected '=' after the key '%.64s', found %s", key,
                  SHOW(peek(ps)));
    else if (old)
        rc = fail(ps, line, WZP_EINVAL, "duplicate key '%.64s' (first defined on line %d)", key,
                  old->line);
    if (rc) {
        free(key);
        return rc;
    }
    ps->p++;
    skip_ws(ps);
    struct wzp_toml_value v = {0};
    rc = parse_value(ps, &v, 0);
    if (rc) {
        value_free(&v);
        free(key);
        return rc;
    }
    return table_add(ps, ps->cur, key, line, &v);
}

/* ---- [table] and [[array]] headers ---- */

static void join_path(char **path, size_t n, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "." : "", path[i]);
}

/* Walk into parent[key] for a header name, creating a table if it is missing. */
static int descend(struct parser *ps, struct wzp_toml_table **t, const char *key, int line,
                   const char *name)
{
    struct wzp_toml_kv *kv = find_kv(*t, key);
    if (!kv)
        return add_table(ps, *t, key, line, false, t);
    if (kv->value.type == WZP_TOML_TABLE) {
        *t = kv->value.u.table;
        return WZP_OK;
    }
    struct wzp_toml_array *a = &kv->value.u.array;
    if (kv->value.type == WZP_TOML_ARRAY && a->of_tables) {
        *t = a->items[a->len - 1].u.table; /* the latest [[key]] entry */
        return WZP_OK;
    }
    return fail(ps, line, WZP_EINVAL, "cannot open [%s]: '%.64s' is already %s (line %d)", name,
                key, type_with_article(kv->value.type), kv->line);
}

/* [name]: a new table, or one so far only created as the parent of another header. */
static int define_table(struct parser *ps, struct wzp_toml_table *t, const char *key, int line,
                        const char *name)
{
    struct wzp_toml_kv *kv = find_kv(t, key);
    if (!kv)
        return add_table(ps, t, key, line, true, &ps->cur);
    if (kv->value.type == WZP_TOML_TABLE && !kv->value.u.table->defined) {
        ps->cur = kv->value.u.table;
        ps->cur->defined = true;
        ps->cur->line = kv->line = line;
        return WZP_OK;
    }
    if (kv->value.type == WZP_TOML_TABLE)
        return fail(ps, line, WZP_EINVAL, "table [%s] is defined twice (first on line %d)", name,
                    kv->line);
    if (kv->value.type == WZP_TOML_ARRAY && kv->value.u.array.of_tables)
        return fail(ps, line, WZP_EINVAL,
                    "'%s' is an array of tables (line %d): add an entry with [[%s]], not [%s]",
                    name, kv->line, name, name);
    return fail(ps, line, WZP_EINVAL, "cannot define table [%s]: '%.64s' is already %s (line %d)",
                name, key, type_with_article(kv->value.type), kv->line);
}

/* [[name]]: append a new table to the array of tables, creating the array if needed. */
static int append_table(struct parser *ps, struct wzp_toml_table *t, const char *key, int line,
                        const char *name)
{
    struct wzp_toml_kv *kv = find_kv(t, key);
    int rc;
    if (!kv) {
        char *k;
        struct wzp_toml_value v = {.type = WZP_TOML_ARRAY, .line = line};
        v.u.array.of_tables = true;
        if ((rc = count_value(ps, line)) || (rc = dup_key(ps, key, &k)) ||
            (rc = table_add(ps, t, k, line, &v)))
            return rc;
        kv = &t->kvs[t->len - 1];
    } else if (kv->value.type == WZP_TOML_TABLE) {
        return fail(ps, line, WZP_EINVAL,
                    "[[%s]] needs an array of tables, but [%s] is a table (line %d)", name, name,
                    kv->line);
    } else if (kv->value.type != WZP_TOML_ARRAY || !kv->value.u.array.of_tables) {
        return fail(ps, line, WZP_EINVAL,
                    "cannot add [[%s]]: '%.64s' is already %s (line %d), not an array of tables",
                    name, key, type_with_article(kv->value.type), kv->line);
    }
    struct wzp_toml_table *nt = calloc(1, sizeof *nt);
    if ((rc = count_value(ps, line)) || !nt) {
        free(nt);
        return rc ? rc : fail_nomem(ps);
    }
    nt->line = line;
    nt->defined = true;
    struct wzp_toml_value item = {.type = WZP_TOML_TABLE, .line = line, .u.table = nt};
    if ((rc = array_push(ps, &kv->value.u.array, &item)))
        return rc;
    ps->cur = nt;
    return WZP_OK;
}

static int parse_header_name(struct parser *ps, char **path, size_t *n)
{
    for (;;) {
        skip_ws(ps);
        if (*n == WZP_TOML_MAX_DEPTH)
            return fail(ps, ps->line, WZP_ETOOBIG, "table name has more than %d parts",
                        WZP_TOML_MAX_DEPTH);
        int rc = parse_key(ps, "a table name", &path[*n]);
        if (rc)
            return rc;
        (*n)++;
        skip_ws(ps);
        if (peek(ps) != '.')
            return WZP_OK;
        ps->p++;
    }
}

static int open_table(struct parser *ps, char **path, size_t n, bool aot, int line)
{
    char name[160];
    struct wzp_toml_table *t = &ps->doc->root;
    join_path(path, n, name, sizeof name);
    for (size_t i = 0; i + 1 < n; i++) {
        int rc = descend(ps, &t, path[i], line, name);
        if (rc)
            return rc;
    }
    if (aot)
        return append_table(ps, t, path[n - 1], line, name);
    return define_table(ps, t, path[n - 1], line, name);
}

static int parse_header(struct parser *ps)
{
    int line = ps->line;
    bool aot = peek_at(ps, 1) == '[';
    char *path[WZP_TOML_MAX_DEPTH];
    size_t n = 0;
    ps->p += aot ? 2 : 1;
    int rc = parse_header_name(ps, path, &n);
    if (!rc && (peek(ps) != ']' || (aot && peek_at(ps, 1) != ']')))
        rc = fail(ps, line, WZP_EINVAL, "expected %s to close the table header, found %s",
                  aot ? "']]'" : "']'", SHOW(peek(ps)));
    if (!rc) {
        ps->p += aot ? 2 : 1;
        rc = open_table(ps, path, n, aot, line);
    }
    for (size_t i = 0; i < n; i++)
        free(path[i]);
    return rc ? rc : end_of_line(ps, "the table header");
}

/* ---- document ---- */

static int parse_document(struct parser *ps)
{
    if (ps->end - ps->p >= 3 && memcmp(ps->p, "\xEF\xBB\xBF", 3) == 0)
        ps->p += 3; /* UTF-8 byte order mark */
    while (ps->p < ps->end) {
        skip_ws(ps);
        int c = peek(ps), rc;
        if (c == '[')
            rc = parse_header(ps);
        else if (c == '#' || c < 0 || c == '\n' || c == '\r')
            rc = end_of_line(ps, NULL);
        else if ((rc = parse_keyval(ps)) == WZP_OK)
            rc = end_of_line(ps, "the value");
        if (rc)
            return rc;
    }
    return WZP_OK;
}

int wzp_toml_parse_ex(const char *text, size_t len, struct wzp_toml **out, int *err_line, char *msg,
                      size_t msglen)
{
    struct parser ps = {.line = 1, .msg = msg, .msglen = msglen};
    int rc;
    *out = NULL;
    if (msglen)
        msg[0] = '\0';
    if (!text)
        text = "";
    ps.p = (const unsigned char *)text;
    ps.end = ps.p + len;
    if (len > WZP_TOML_MAX_INPUT)
        rc = fail(&ps, 0, WZP_ETOOBIG, "the input is %zu bytes; the limit is %u bytes", len,
                  (unsigned)WZP_TOML_MAX_INPUT);
    else if (!(rc = check_encoding(&ps)) && !(ps.doc = calloc(1, sizeof *ps.doc)))
        rc = fail_nomem(&ps);
    if (!rc) {
        ps.cur = &ps.doc->root;
        rc = parse_document(&ps);
    }
    if (rc) {
        wzp_toml_free(ps.doc);
        if (err_line)
            *err_line = ps.err_line;
        return rc;
    }
    if (err_line)
        *err_line = 0;
    *out = ps.doc;
    return WZP_OK;
}

int wzp_toml_parse(const char *text, size_t len, struct wzp_toml **out, char *err, size_t errlen)
{
    char msg[512];
    int line = 0;
    int rc = wzp_toml_parse_ex(text, len, out, &line, msg, sizeof msg);
    if (rc && errlen) {
        if (line > 0)
            snprintf(err, errlen, "line %d: %s", line, msg);
        else
            snprintf(err, errlen, "%s", msg);
    } else if (errlen) {
        err[0] = '\0';
    }
    return rc;
}

void wzp_toml_free(struct wzp_toml *doc)
{
    if (!doc)
        return;
    table_clear(&doc->root);
    free(doc);
}

/* ---- lookups ---- */

const struct wzp_toml_table *wzp_toml_root(const struct wzp_toml *doc)
{
    return &doc->root;
}

const struct wzp_toml_kv *wzp_toml_find(const struct wzp_toml_table *t, const char *key)
{
    return find_kv(t, key);
}

const struct wzp_toml_value *wzp_toml_get(const struct wzp_toml_table *t, const char *key)
{
    const struct wzp_toml_kv *kv = find_kv(t, key);
    return kv ? &kv->value : NULL;
}

size_t wzp_toml_table_len(const struct wzp_toml_table *t)
{
    return t->len;
}

const struct wzp_toml_kv *wzp_toml_table_at(const struct wzp_toml_table *t, size_t i)
{
    return i < t->len ? &t->kvs[i] : NULL;
}

size_t wzp_toml_array_len(const struct wzp_toml_value *v)
{
    return v && v->type == WZP_TOML_ARRAY ? v->u.array.len : 0;
}

const struct wzp_toml_value *wzp_toml_array_at(const struct wzp_toml_value *v, size_t i)
{
    return i < wzp_toml_array_len(v) ? &v->u.array.items[i] : NULL;
}

const char *wzp_toml_type_name(enum wzp_toml_type type)
{
    switch (type) {
    case WZP_TOML_STRING:
        return "string";
    case WZP_TOML_INTEGER:
        return "integer";
    case WZP_TOML_FLOAT:
        return "float";
    case WZP_TOML_BOOL:
        return "boolean";
    case WZP_TOML_ARRAY:
        return "array";
    case WZP_TOML_TABLE:
        return "table";
    }
    return "unknown";
}
