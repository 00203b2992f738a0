/*
 * toml.h - a strict parser for the TOML subset that relay config files use.
 *
 * Accepted (TOML 1.0 semantics):
 *   - comments (#), blank lines, LF or CRLF line ends, an optional UTF-8 BOM;
 *   - key = value, with bare keys (A-Z a-z 0-9 _ -) or quoted keys ("..." or '...');
 *   - basic strings "..." with the escapes \" \\ \b \t \n \f \r \uXXXX \UXXXXXXXX,
 *     literal strings '...';
 *   - decimal integers (optional sign, '_' between digits, no leading zeros, 64-bit),
 *     floats in decimal/exponent form (1.5, -2e3, 6.02E+23), true/false;
 *   - arrays of values (any types, nested, spread over lines, trailing comma, comments);
 *   - [table] and [[array-of-tables]] headers, dotted header names ([a.b]) included.
 * Rejected with a message that says what to write instead: dotted keys (a.b = 1), inline
 * tables ({...}), multi-line strings, hex/octal/binary integers, inf/nan, dates and
 * times, unquoted strings, duplicate keys, tables defined twice, invalid UTF-8.
 *
 * Every key records the line it is on, so callers can report "file:line: message".
 * Errors: WZP_EINVAL (syntax), WZP_ETOOBIG (a WZP_TOML_MAX_* limit), WZP_ENOMEM; nothing is
 * allocated when a parse fails. The document is read-only after parsing and owned by the
 * caller (wzp_toml_free). Not thread-affine; no global state.
 */
#ifndef WZP_TOML_H
#define WZP_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WZP_TOML_MAX_INPUT  (1u << 20) /* bytes of input */
#define WZP_TOML_MAX_DEPTH  16         /* parts of a header name; nesting of arrays */
#define WZP_TOML_MAX_ARRAY  4096       /* items in one array or one [[array]] */
#define WZP_TOML_MAX_KEYS   1024       /* keys in one table */
#define WZP_TOML_MAX_VALUES 65536      /* values (tables included) in one document */

enum wzp_toml_type {
    WZP_TOML_STRING = 1,
    WZP_TOML_INTEGER,
    WZP_TOML_FLOAT,
    WZP_TOML_BOOL,
    WZP_TOML_ARRAY,
    WZP_TOML_TABLE,
};

struct wzp_toml_value;
struct wzp_toml_table;

struct wzp_toml_array {
    struct wzp_toml_value *items;
    size_t len;
    size_t cap;
    bool of_tables; /* built by [[name]] headers (every item is a table) */
};

struct wzp_toml_value {
    enum wzp_toml_type type;
    int line; /* line the value starts on ([[header]] line for array-of-tables items) */
    union {
        struct {
            char *ptr; /* NUL-terminated; may also contain NUL bytes written as \u0000 */
            size_t len;
        } str;
        int64_t integer;
        double real;
        bool boolean;
        struct wzp_toml_array array;
        struct wzp_toml_table *table;
    } u;
};

struct wzp_toml_kv {
    char *key; /* never contains NUL */
    int line;  /* line of the key (of the header for tables made by headers) */
    struct wzp_toml_value value;
};

/* Keys in the order they first appear. */
struct wzp_toml_table {
    struct wzp_toml_kv *kvs;
    size_t len;
    size_t cap;
    int line;     /* line of its [header]; 0 for the root table */
    bool defined; /* a [header] named it (not only created as the parent of one) */
};

struct wzp_toml; /* a parsed document */

/*
 * Parse len bytes of text (need not be NUL-terminated). On success *out owns the document.
 * On failure *out is NULL and err holds "line N: what is wrong, what was expected" (no
 * "line N: " prefix for errors not tied to a line, such as an oversized input).
 */
int wzp_toml_parse(const char *text, size_t len, struct wzp_toml **out, char *err, size_t errlen);

/* Same, but the line (0 if none) and the message without the "line N: " prefix are separate. */
int wzp_toml_parse_ex(const char *text, size_t len, struct wzp_toml **out, int *err_line, char *msg,
                      size_t msglen);

void wzp_toml_free(struct wzp_toml *doc); /* NULL is fine */

/* The top-level table. */
const struct wzp_toml_table *wzp_toml_root(const struct wzp_toml *doc);

/* The entry for key in t, or NULL. */
const struct wzp_toml_kv *wzp_toml_find(const struct wzp_toml_table *t, const char *key);

/* The value of key in t, or NULL. */
const struct wzp_toml_value *wzp_toml_get(const struct wzp_toml_table *t, const char *key);

/* Iterate a table: entries 0 .. wzp_toml_table_len(t) - 1, in file order. */
size_t wzp_toml_table_len(const struct wzp_toml_table *t);
const struct wzp_toml_kv *wzp_toml_table_at(const struct wzp_toml_table *t, size_t i);

/* Array length (0 if v is not an array) and item i (NULL if out of range). */
size_t wzp_toml_array_len(const struct wzp_toml_value *v);
const struct wzp_toml_value *wzp_toml_array_at(const struct wzp_toml_value *v, size_t i);

/* "string", "integer", "float", "boolean", "array", "table". */
const char *wzp_toml_type_name(enum wzp_toml_type type);

#endif
