/*
 * fuzz_toml.c - libFuzzer target: the TOML parser and the config-file mapping.
 *
 * For any input: no crash or leak, and a failure leaves nothing behind. When the input
 * parses, the tree must be well-formed (unique keys, sane lines, terminated strings), and
 * printing it back as TOML and parsing that must give the same tree. The config-file
 * loader runs on the same bytes and must either succeed or name the file in its error.
 */
#include "buf.h"
#include "config_file.h"
#include "toml.h"

#include <stdlib.h>
#include <string.h>

static int max_line; /* lines in the current input */

static void check_value(const struct wzp_toml_value *v, int depth);

static void check_table(const struct wzp_toml_table *t, int depth)
{
    if (depth > WZP_TOML_MAX_DEPTH + 1 || t->len > WZP_TOML_MAX_KEYS)
        abort();
    for (size_t i = 0; i < wzp_toml_table_len(t); i++) {
        const struct wzp_toml_kv *kv = wzp_toml_table_at(t, i);
        if (kv->line < 1 || kv->line > max_line || wzp_toml_find(t, kv->key) != kv)
            abort(); /* lines in range, keys unique */
        check_value(&kv->value, depth);
    }
}

static void check_value(const struct wzp_toml_value *v, int depth)
{
    if (v->line < 1 || v->line > max_line)
        abort();
    switch (v->type) {
    case WZP_TOML_STRING:
        if (v->u.str.ptr[v->u.str.len] != '\0')
            abort();
        break;
    case WZP_TOML_ARRAY:
        if (v->u.array.len > WZP_TOML_MAX_ARRAY || depth > WZP_TOML_MAX_DEPTH)
            abort();
        for (size_t i = 0; i < wzp_toml_array_len(v); i++) {
            const struct wzp_toml_value *item = wzp_toml_array_at(v, i);
            if (v->u.array.of_tables != (item->type == WZP_TOML_TABLE))
                abort();
            check_value(item, v->u.array.of_tables ? depth : depth + 1);
        }
        break;
    case WZP_TOML_TABLE:
        check_table(v->u.table, depth + 1);
        break;
    case WZP_TOML_INTEGER:
    case WZP_TOML_FLOAT:
    case WZP_TOML_BOOL:
        break;
    default:
        abort();
    }
}

/* ---- printing a tree back as TOML ---- */

static void emit_string(struct wzp_buf *b, const char *s, size_t len)
{
    wzp_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            wzp_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            wzp_buf_printf(b, "\\u%04X", c);
        else
            wzp_buf_append(b, &s[i], 1);
    }
    wzp_buf_append(b, "\"", 1);
}

static void emit_value(struct wzp_buf *b, const struct wzp_toml_value *v)
{
    char num[64];
    switch (v->type) {
    case WZP_TOML_STRING:
        emit_string(b, v->u.str.ptr, v->u.str.len);
        break;
    case WZP_TOML_INTEGER:
        wzp_buf_printf(b, "%lld", (long long)v->u.integer);
        break;
    case WZP_TOML_FLOAT:
        snprintf(num, sizeof num, "%.17g", v->u.real);
        wzp_buf_printf(b, "%s%s", num, strpbrk(num, ".e") ? "" : ".0");
        break;
    case WZP_TOML_BOOL:
        wzp_buf_printf(b, "%s", v->u.boolean ? "true" : "false");
        break;
    case WZP_TOML_ARRAY:
        wzp_buf_append(b, "[", 1);
        for (size_t i = 0; i < v->u.array.len; i++) {
            emit_value(b, &v->u.array.items[i]);
            wzp_buf_append(b, ",", 1);
        }
        wzp_buf_append(b, "]", 1);
        break;
    default:
        abort();
    }
}

/* path: the header name so far (quoted keys joined by '.'). */
static void emit_table(struct wzp_buf *b, const struct wzp_toml_table *t, struct wzp_buf *path)
{
    for (size_t i = 0; i < t->len; i++) { /* plain keys first */
        const struct wzp_toml_kv *kv = &t->kvs[i];
        if (kv->value.type == WZP_TOML_TABLE ||
            (kv->value.type == WZP_TOML_ARRAY && kv->value.u.array.of_tables))
            continue;
        emit_string(b, kv->key, strlen(kv->key));
        wzp_buf_append(b, " = ", 3);
        emit_value(b, &kv->value);
        wzp_buf_append(b, "\n", 1);
    }
    for (size_t i = 0; i < t->len; i++) {
        const struct wzp_toml_kv *kv = &t->kvs[i];
        bool aot = kv->value.type == WZP_TOML_ARRAY && kv->value.u.array.of_tables;
        if (kv->value.type != WZP_TOML_TABLE && !aot)
            continue;
        size_t saved = path->len;
        if (saved)
            wzp_buf_append(path, ".", 1);
        emit_string(path, kv->key, strlen(kv->key));
        size_t n = aot ? kv->value.u.array.len : 1;
        for (size_t j = 0; j < n; j++) {
            wzp_buf_printf(b, "%s%.*s%s\n", aot ? "[[" : "[", (int)path->len, (char *)path->data,
                           aot ? "]]" : "]");
            emit_table(b, aot ? kv->value.u.array.items[j].u.table : kv->value.u.table, path);
        }
        path->len = saved;
    }
}

static bool same_table(const struct wzp_toml_table *a, const struct wzp_toml_table *b);

static bool same_value(const struct wzp_toml_value *a, const struct wzp_toml_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case WZP_TOML_STRING:
        return a->u.str.len == b->u.str.len &&
               memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0;
    case WZP_TOML_INTEGER:
        return a->u.integer == b->u.integer;
    case WZP_TOML_FLOAT:
        return memcmp(&a->u.real, &b->u.real, sizeof a->u.real) == 0;
    case WZP_TOML_BOOL:
        return a->u.boolean == b->u.boolean;
    case WZP_TOML_ARRAY:
        if (a->u.array.len != b->u.array.len || a->u.array.of_tables != b->u.array.of_tables)
            return false;
        for (size_t i = 0; i < a->u.array.len; i++)
            if (!same_value(&a->u.array.items[i], &b->u.array.items[i]))
                return false;
        return true;
    case WZP_TOML_TABLE:
        return same_table(a->u.table, b->u.table);
    }
    return false;
}

static bool same_table(const struct wzp_toml_table *a, const struct wzp_toml_table *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++) {
        const struct wzp_toml_value *other = wzp_toml_get(b, a->kvs[i].key);
        if (!other || !same_value(&a->kvs[i].value, other))
            return false;
    }
    return true;
}

static void check_round_trip(const struct wzp_toml *doc)
{
    struct wzp_buf text = WZP_BUF_INIT, path = WZP_BUF_INIT;
    struct wzp_toml *again;
    char err[256];
    emit_table(&text, wzp_toml_root(doc), &path);
    int rc = wzp_toml_parse((char *)text.data, text.len, &again, err, sizeof err);
    if (rc == WZP_ETOOBIG) { /* escapes can make the printed form larger */
        wzp_buf_free(&text);
        wzp_buf_free(&path);
        return;
    }
    if (rc != WZP_OK || !same_table(wzp_toml_root(doc), wzp_toml_root(again))) {
        fprintf(stderr, "round trip failed (%s):\n%.*s\n", err, (int)text.len, (char *)text.data);
        abort();
    }
    wzp_toml_free(again);
    wzp_buf_free(&text);
    wzp_buf_free(&path);
}

/* ---- the config file on top ---- */

static void check_config(const char *text, size_t size)
{
    struct wzp_file_config cfg, zero;
    char err[512];
    memset(&zero, 0, sizeof zero);
    int rc = wzp_config_file_parse("fuzz.toml", text, size, &cfg, err, sizeof err);
    if (rc != WZP_OK) {
        if (strncmp(err, "fuzz.toml", 9) != 0 || memcmp(&cfg, &zero, sizeof cfg) != 0)
            abort();
        return;
    }
    for (size_t i = 0; i < cfg.peers_len; i++)
        if (!cfg.peers[i].url || !cfg.peers[i].fingerprint)
            abort();
    for (size_t i = 0; i < cfg.global_rooms_len; i++)
        if (!cfg.global_rooms[i] || !cfg.global_rooms[i][0])
            abort();
    if (cfg.set.max_sessions && cfg.max_sessions < 1)
        abort();
    wzp_config_file_free(&cfg);
}

/* The entry point libFuzzer calls. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct wzp_toml *doc = NULL;
    char err[256];
    max_line = 1;
    for (size_t i = 0; i < size; i++)
        max_line += data[i] == '\n';
    int rc = wzp_toml_parse(text, size, &doc, err, sizeof err);
    if (rc == WZP_OK) {
        check_table(wzp_toml_root(doc), 0);
        check_round_trip(doc);
        wzp_toml_free(doc);
    } else if (doc || !err[0] || (rc != WZP_EINVAL && rc != WZP_ETOOBIG && rc != WZP_ENOMEM)) {
        abort();
    }
    check_config(text, size);
    return 0;
}
