/* test_toml.c - the strict TOML subset parser: every accepted construct, every rejection
 * (with its line), lookups and limits. */
#include "toml.h"

#include "buf.h"
#include "common.h"

#include <criterion/criterion.h>
#include <string.h>

static struct wzp_toml *parse_ok(const char *text)
{
    struct wzp_toml *doc = NULL;
    char err[512];
    int rc = wzp_toml_parse(text, strlen(text), &doc, err, sizeof err);
    cr_assert_eq(rc, WZP_OK, "parse failed: %s\n--- input ---\n%s", err, text);
    cr_assert_not_null(doc);
    return doc;
}

/* The parse fails with status rc on line, with want somewhere in the message. */
static void parse_fails_len(const char *text, size_t len, int rc, int line, const char *want)
{
    struct wzp_toml *doc = (struct wzp_toml *)&doc;
    char msg[512], err[512], prefix[32];
    int got_line = -1;
    int got = wzp_toml_parse_ex(text, len, &doc, &got_line, msg, sizeof msg);
    cr_assert_eq(got, rc, "status %d, want %d (%s)\n--- input ---\n%s", got, rc, msg, text);
    cr_assert_null(doc);
    cr_assert_eq(got_line, line, "line %d, want %d: %s\n--- input ---\n%s", got_line, line, msg,
                 text);
    cr_assert(strstr(msg, want), "message \"%s\" lacks \"%s\"", msg, want);
    /* the plain API: the same message behind "line N: " */
    cr_assert_eq(wzp_toml_parse(text, len, &doc, err, sizeof err), rc);
    snprintf(prefix, sizeof prefix, "line %d: ", line);
    if (line > 0)
        cr_assert(strncmp(err, prefix, strlen(prefix)) == 0 &&
                      strcmp(err + strlen(prefix), msg) == 0,
                  "\"%s\" is not \"%s%s\"", err, prefix, msg);
    else
        cr_assert_str_eq(err, msg);
}

static void parse_fails(const char *text, int line, const char *want)
{
    parse_fails_len(text, strlen(text), WZP_EINVAL, line, want);
}

static const struct wzp_toml_value *get(const struct wzp_toml *doc, const char *key)
{
    const struct wzp_toml_value *v = wzp_toml_get(wzp_toml_root(doc), key);
    cr_assert_not_null(v, "no key '%s'", key);
    return v;
}

static const char *str(const struct wzp_toml *doc, const char *key)
{
    const struct wzp_toml_value *v = get(doc, key);
    cr_assert_eq(v->type, WZP_TOML_STRING, "'%s' is a %s", key, wzp_toml_type_name(v->type));
    cr_assert_eq(strlen(v->u.str.ptr), v->u.str.len);
    return v->u.str.ptr;
}

static int64_t integer(const struct wzp_toml *doc, const char *key)
{
    const struct wzp_toml_value *v = get(doc, key);
    cr_assert_eq(v->type, WZP_TOML_INTEGER, "'%s' is a %s", key, wzp_toml_type_name(v->type));
    return v->u.integer;
}

static double real(const struct wzp_toml *doc, const char *key)
{
    const struct wzp_toml_value *v = get(doc, key);
    cr_assert_eq(v->type, WZP_TOML_FLOAT, "'%s' is a %s", key, wzp_toml_type_name(v->type));
    return v->u.real;
}

static const struct wzp_toml_table *table(const struct wzp_toml_table *t, const char *key)
{
    const struct wzp_toml_value *v = wzp_toml_get(t, key);
    cr_assert(v && v->type == WZP_TOML_TABLE, "'%s' is not a table", key);
    return v->u.table;
}

/* ---- accepted constructs ---- */

Test(toml, empty_and_comment_only_documents)
{
    const char *docs[] = {"",
                          "\n\n",
                          "# just a comment",
                          "  # indented\n\t# tab\n\n# end\n",
                          "\xEF\xBB\xBF# after a byte order mark\n",
                          "\r\n# crlf\r\n"};
    for (size_t i = 0; i < WZP_ARRAY_LEN(docs); i++) {
        struct wzp_toml *doc = parse_ok(docs[i]);
        cr_assert_eq(wzp_toml_table_len(wzp_toml_root(doc)), 0);
        wzp_toml_free(doc);
    }
    struct wzp_toml *doc = NULL;
    cr_assert_eq(wzp_toml_parse(NULL, 0, &doc, NULL, 0), WZP_OK);
    wzp_toml_free(doc);
    wzp_toml_free(NULL);
}

Test(toml, keys_bare_and_quoted)
{
    struct wzp_toml *doc = parse_ok("bare_key = 1\n"
                                    "bare-key = 2\n"
                                    "1234 = 3\n"
                                    "\"quoted key\" = 4\n"
                                    "'literal.key' = 5\n"
                                    "\"\" = 6\n"
                                    "\"esc\\u00e9\" = 7\n"
                                    "  indented\t=\t8  \n");
    cr_assert_eq(integer(doc, "bare_key"), 1);
    cr_assert_eq(integer(doc, "bare-key"), 2);
    cr_assert_eq(integer(doc, "1234"), 3);
    cr_assert_eq(integer(doc, "quoted key"), 4);
    cr_assert_eq(integer(doc, "literal.key"), 5);
    cr_assert_eq(integer(doc, ""), 6);
    cr_assert_eq(integer(doc, "esc\xc3\xa9"), 7);
    cr_assert_eq(integer(doc, "indented"), 8);
    wzp_toml_free(doc);
}

Test(toml, key_lines_and_order)
{
    struct wzp_toml *doc = parse_ok("# comment\n"
                                    "\n"
                                    "b = 1\n"
                                    "a = [\n"
                                    "  1,\n"
                                    "  2,\n"
                                    "]\n"
                                    "c = 'x' # trailing comment\n"
                                    "[t]\n"
                                    "k = true\n");
    const struct wzp_toml_table *root = wzp_toml_root(doc);
    cr_assert_eq(wzp_toml_table_len(root), 4);
    const char *keys[] = {"b", "a", "c", "t"};
    int lines[] = {3, 4, 8, 9};
    for (size_t i = 0; i < 4; i++) {
        const struct wzp_toml_kv *kv = wzp_toml_table_at(root, i);
        cr_assert_str_eq(kv->key, keys[i]);
        cr_assert_eq(kv->line, lines[i], "%s on line %d", kv->key, kv->line);
    }
    cr_assert_null(wzp_toml_table_at(root, 4));
    const struct wzp_toml_value *a = get(doc, "a");
    cr_assert_eq(wzp_toml_array_at(a, 0)->line, 5);
    cr_assert_eq(wzp_toml_array_at(a, 1)->line, 6);
    const struct wzp_toml_kv *k = wzp_toml_find(table(root, "t"), "k");
    cr_assert_eq(k->line, 10);
    cr_assert_eq(table(root, "t")->line, 9);
    cr_assert_null(wzp_toml_find(root, "missing"));
    cr_assert_null(wzp_toml_get(root, "missing"));
    wzp_toml_free(doc);
}

Test(toml, crlf_line_ends_count_lines)
{
    struct wzp_toml *doc = parse_ok("a = 1\r\n\r\nb = \"x\"\r\n");
    cr_assert_eq(wzp_toml_find(wzp_toml_root(doc), "b")->line, 3);
    cr_assert_str_eq(str(doc, "b"), "x");
    wzp_toml_free(doc);
}

Test(toml, basic_string_escapes)
{
    struct wzp_toml *doc = parse_ok("s = \"q\\\" b\\\\ n\\n t\\t r\\r b\\b f\\f\"\n"
                                    "u = \"\\u00e9\\u20AC\\U0001F600\\u0041\"\n"
                                    "raw = \"caf\xc3\xa9 \t tab\"\n"
                                    "empty = \"\"\n"
                                    "hash = \"# not a comment\"\n"
                                    "quote = \"it's\"\n");
    cr_assert_str_eq(str(doc, "s"), "q\" b\\ n\n t\t r\r b\b f\f");
    cr_assert_str_eq(str(doc, "u"), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                    "A");
    cr_assert_str_eq(str(doc, "raw"), "caf\xc3\xa9 \t tab");
    cr_assert_str_eq(str(doc, "empty"), "");
    cr_assert_str_eq(str(doc, "hash"), "# not a comment");
    cr_assert_str_eq(str(doc, "quote"), "it's");
    wzp_toml_free(doc);
}

Test(toml, string_with_nul_escape_keeps_length)
{
    struct wzp_toml *doc = parse_ok("s = \"a\\u0000b\"\n");
    const struct wzp_toml_value *v = get(doc, "s");
    cr_assert_eq(v->u.str.len, 3);
    cr_assert_eq(memcmp(v->u.str.ptr, "a\0b", 4), 0);
    wzp_toml_free(doc);
}

Test(toml, literal_strings)
{
    struct wzp_toml *doc = parse_ok("path = 'C:\\Users\\nodejs\\templates'\n"
                                    "quoted = 'Tom \"Dubs\" Preston'\n"
                                    "regex = '<\\i\\c*\\s*>'\n"
                                    "tab = '\tx'\n"
                                    "empty = ''\n");
    cr_assert_str_eq(str(doc, "path"), "C:\\Users\\nodejs\\templates");
    cr_assert_str_eq(str(doc, "quoted"), "Tom \"Dubs\" Preston");
    cr_assert_str_eq(str(doc, "regex"), "<\\i\\c*\\s*>");
    cr_assert_str_eq(str(doc, "tab"), "\tx");
    cr_assert_str_eq(str(doc, "empty"), "");
    wzp_toml_free(doc);
}

Test(toml, integers)
{
    struct wzp_toml *doc = parse_ok("a = 0\nb = +0\nc = -0\nd = 42\ne = +17\nf = -17\n"
                                    "g = 1_000\nh = 5_349_221\ni = 9223372036854775807\n"
                                    "j = -9223372036854775808\nk = 1_2_3\n");
    cr_assert_eq(integer(doc, "a"), 0);
    cr_assert_eq(integer(doc, "b"), 0);
    cr_assert_eq(integer(doc, "c"), 0);
    cr_assert_eq(integer(doc, "d"), 42);
    cr_assert_eq(integer(doc, "e"), 17);
    cr_assert_eq(integer(doc, "f"), -17);
    cr_assert_eq(integer(doc, "g"), 1000);
    cr_assert_eq(integer(doc, "h"), 5349221);
    cr_assert_eq(integer(doc, "i"), INT64_MAX);
    cr_assert_eq(integer(doc, "j"), INT64_MIN);
    cr_assert_eq(integer(doc, "k"), 123);
    wzp_toml_free(doc);
}

Test(toml, floats)
{
    struct wzp_toml *doc = parse_ok("a = 1.5\nb = -0.01\nc = 5e+22\nd = 1e06\ne = -2E-2\n"
                                    "f = 6.626e-34\ng = 9_224.617_445\nh = 0.0\ni = +3.25\n"
                                    "j = 0e0\nk = 1e-400\n");
    cr_assert_float_eq(real(doc, "a"), 1.5, 1e-12);
    cr_assert_float_eq(real(doc, "b"), -0.01, 1e-12);
    cr_assert_float_eq(real(doc, "c"), 5e22, 1e10);
    cr_assert_float_eq(real(doc, "d"), 1e6, 1e-6);
    cr_assert_float_eq(real(doc, "e"), -0.02, 1e-12);
    cr_assert_float_eq(real(doc, "f"), 6.626e-34, 1e-40);
    cr_assert_float_eq(real(doc, "g"), 9224.617445, 1e-9);
    cr_assert_float_eq(real(doc, "h"), 0.0, 0);
    cr_assert_float_eq(real(doc, "i"), 3.25, 0);
    cr_assert_float_eq(real(doc, "j"), 0.0, 0);
    cr_assert_float_eq(real(doc, "k"), 0.0, 1e-300); /* underflow rounds to zero */
    wzp_toml_free(doc);
}

Test(toml, booleans)
{
    struct wzp_toml *doc = parse_ok("t = true\nf = false # comment\n");
    cr_assert_eq(get(doc, "t")->type, WZP_TOML_BOOL);
    cr_assert(get(doc, "t")->u.boolean);
    cr_assert_not(get(doc, "f")->u.boolean);
    wzp_toml_free(doc);
}

Test(toml, arrays)
{
    struct wzp_toml *doc = parse_ok("empty = []\n"
                                    "spaced = [ ]\n"
                                    "ints = [1, 2, 3]\n"
                                    "trailing = [\"a\", 'b',]\n"
                                    "multi = [\n"
                                    "  \"x\", # first\n"
                                    "  # a comment line\n"
                                    "\n"
                                    "  \"y\"\n"
                                    "  ,\n"
                                    "]\n"
                                    "nested = [[1, 2], [\"a\", [true]], []]\n"
                                    "mixed = [1, 2.5, \"s\", false]\n"
                                    "crlf = [\r\n1,\r\n2\r\n]\r\n");
    const struct wzp_toml_value *v = get(doc, "empty");
    cr_assert_eq(v->type, WZP_TOML_ARRAY);
    cr_assert_eq(wzp_toml_array_len(v), 0);
    cr_assert_eq(wzp_toml_array_len(get(doc, "spaced")), 0);
    v = get(doc, "ints");
    cr_assert_eq(wzp_toml_array_len(v), 3);
    cr_assert_eq(wzp_toml_array_at(v, 2)->u.integer, 3);
    cr_assert_null(wzp_toml_array_at(v, 3));
    cr_assert_not(v->u.array.of_tables);
    v = get(doc, "trailing");
    cr_assert_eq(wzp_toml_array_len(v), 2);
    cr_assert_str_eq(wzp_toml_array_at(v, 1)->u.str.ptr, "b");
    v = get(doc, "multi");
    cr_assert_eq(wzp_toml_array_len(v), 2);
    cr_assert_eq(wzp_toml_array_at(v, 0)->line, 6);
    cr_assert_eq(wzp_toml_array_at(v, 1)->line, 9);
    v = get(doc, "nested");
    cr_assert_eq(wzp_toml_array_len(v), 3);
    const struct wzp_toml_value *inner = wzp_toml_array_at(wzp_toml_array_at(v, 1), 1);
    cr_assert_eq(inner->type, WZP_TOML_ARRAY);
    cr_assert(wzp_toml_array_at(inner, 0)->u.boolean);
    cr_assert_eq(wzp_toml_array_len(wzp_toml_array_at(v, 2)), 0);
    v = get(doc, "mixed");
    cr_assert_eq(wzp_toml_array_at(v, 1)->type, WZP_TOML_FLOAT);
    cr_assert_eq(wzp_toml_array_at(v, 3)->type, WZP_TOML_BOOL);
    cr_assert_eq(wzp_toml_array_len(get(doc, "crlf")), 2);
    cr_assert_eq(wzp_toml_find(wzp_toml_root(doc), "crlf")->line, 14);
    cr_assert_eq(wzp_toml_array_len(wzp_toml_array_at(get(doc, "ints"), 0)), 0, "not an array");
    cr_assert_eq(wzp_toml_array_len(NULL), 0);
    wzp_toml_free(doc);
}

Test(toml, tables)
{
    struct wzp_toml *doc = parse_ok("top = 1\n"
                                    "[server]\n"
                                    "port = 4433\n"
                                    "[ \"quoted name\" ]  # comment\n"
                                    "x = 'y'\n"
                                    "[a.b.c]\n"
                                    "deep = true\n"
                                    "[a]\n"
                                    "shallow = true\n"
                                    "[a . 'b' . d]\n"
                                    "other = 1\n");
    const struct wzp_toml_table *root = wzp_toml_root(doc);
    cr_assert_eq(integer(doc, "top"), 1);
    const struct wzp_toml_table *server = table(root, "server");
    cr_assert_eq(wzp_toml_get(server, "port")->u.integer, 4433);
    cr_assert_eq(server->line, 2);
    cr_assert_str_eq(wzp_toml_get(table(root, "quoted name"), "x")->u.str.ptr, "y");
    const struct wzp_toml_table *a = table(root, "a");
    cr_assert(wzp_toml_get(a, "shallow")->u.boolean);
    cr_assert_eq(a->line, 8, "the header that defines [a] is its line");
    cr_assert_eq(wzp_toml_find(root, "a")->line, 8);
    const struct wzp_toml_table *b = table(a, "b");
    cr_assert(wzp_toml_get(table(b, "c"), "deep")->u.boolean);
    cr_assert_eq(wzp_toml_get(table(b, "d"), "other")->u.integer, 1);
    cr_assert_eq(wzp_toml_table_len(b), 2);
    wzp_toml_free(doc);
}

Test(toml, arrays_of_tables)
{
    struct wzp_toml *doc = parse_ok("[[peers]]\n"
                                    "url = \"10.0.0.1:4433\"\n"
                                    "\n"
                                    "[[peers]] # second\n"
                                    "url = \"10.0.0.2:4433\"\n"
                                    "label = \"b\"\n"
                                    "[peers.extra]\n"
                                    "k = 1\n"
                                    "[[peers]]\n"
                                    "[[fruit.variety]]\n"
                                    "name = \"red\"\n"
                                    "[[fruit.variety]]\n"
                                    "name = \"green\"\n");
    const struct wzp_toml_value *peers = get(doc, "peers");
    cr_assert_eq(peers->type, WZP_TOML_ARRAY);
    cr_assert(peers->u.array.of_tables);
    cr_assert_eq(wzp_toml_array_len(peers), 3);
    const struct wzp_toml_value *p0 = wzp_toml_array_at(peers, 0);
    cr_assert_eq(p0->type, WZP_TOML_TABLE);
    cr_assert_eq(p0->line, 1);
    cr_assert_str_eq(wzp_toml_get(p0->u.table, "url")->u.str.ptr, "10.0.0.1:4433");
    const struct wzp_toml_table *p1 = wzp_toml_array_at(peers, 1)->u.table;
    cr_assert_eq(p1->line, 4);
    cr_assert_str_eq(wzp_toml_get(p1, "label")->u.str.ptr, "b");
    cr_assert_eq(wzp_toml_get(table(p1, "extra"), "k")->u.integer, 1,
                 "[peers.extra] goes into the latest [[peers]]");
    cr_assert_eq(wzp_toml_table_len(wzp_toml_array_at(peers, 2)->u.table), 0);
    const struct wzp_toml_value *variety =
        wzp_toml_get(table(wzp_toml_root(doc), "fruit"), "variety");
    cr_assert_eq(wzp_toml_array_len(variety), 2);
    cr_assert_str_eq(wzp_toml_get(wzp_toml_array_at(variety, 1)->u.table, "name")->u.str.ptr,
                     "green");
    wzp_toml_free(doc);
}

Test(toml, input_need_not_be_nul_terminated)
{
    const char text[] = "a = 12345";
    struct wzp_toml *doc = NULL;
    cr_assert_eq(wzp_toml_parse(text, 5, &doc, NULL, 0), WZP_OK);
    cr_assert_eq(integer(doc, "a"), 1);
    wzp_toml_free(doc);
}

Test(toml, type_names)
{
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_STRING), "string");
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_INTEGER), "integer");
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_FLOAT), "float");
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_BOOL), "boolean");
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_ARRAY), "array");
    cr_assert_str_eq(wzp_toml_type_name(WZP_TOML_TABLE), "table");
}

/* ---- rejections ---- */

Test(toml, rejects_unsupported_constructs)
{
    parse_fails("a = 1\n\nb.c = 2\n", 3,
                "dotted key 'b.c' is not supported: put the key under a [b] table header");
    parse_fails("\"x y\" . z=1\n", 1, "dotted key '\"x y\" . z' is not supported");
    parse_fails("a = 1\nb = { c = 1 }\n", 2, "inline tables");
    parse_fails("s = \"\"\"\nmulti\n\"\"\"\n", 1, "multi-line strings");
    parse_fails("s = '''\nmulti\n'''\n", 1, "multi-line strings");
    parse_fails("\"\"\"k\"\"\" = 1\n", 1, "multi-line strings cannot be keys");
    parse_fails("x = 0x1F\n", 1, "hexadecimal");
    parse_fails("x = 0o17\n", 1, "octal");
    parse_fails("x = 0b101\n", 1, "binary");
    parse_fails("x = inf\n", 1, "inf and nan");
    parse_fails("x = -inf\n", 1, "inf and nan");
    parse_fails("x = nan\n", 1, "inf and nan");
    parse_fails("d = 1979-05-27\n", 1, "dates and times");
    parse_fails("d = 07:32:00\n", 1, "dates and times");
    parse_fails("d = 1979-05-27T07:32:00Z\n", 1, "dates and times");
    parse_fails("d = 1979-05-27 07:32:00\n", 1, "dates and times");
}

Test(toml, rejects_unquoted_text)
{
    parse_fails("\nlog_level = info\n", 2, "strings must be quoted: \"info\"");
    parse_fails("b = True\n", 1, "unquoted text 'True'");
    parse_fails("b = yes\n", 1, "unquoted text");
}

Test(toml, rejects_bad_key_value_lines)
{
    parse_fails("a =\n", 1, "expected a value");
    parse_fails("a = # comment\n", 1, "expected a value");
    parse_fails("a\n", 1, "expected '=' after the key 'a'");
    parse_fails("a 1\n", 1, "expected '=' after the key 'a', found '1'");
    parse_fails("= 1\n", 1, "expected a key");
    parse_fails("a = 1 2\n", 1, "unexpected '2' after the value");
    parse_fails("a = \"x\" y\n", 1, "unexpected 'y' after the value");
    parse_fails("a = 1, b = 2\n", 1, "unexpected ','");
    parse_fails("a = 1\nb = ~\n", 2, "expected a value");
    parse_fails("a = 1 = 2\n", 1, "unexpected '='");
    parse_fails("\"k\\u0000\" = 1\n", 1, "keys must not contain NUL");
}

Test(toml, rejects_bad_strings)
{
    parse_fails("s = \"a\\x\"\n", 1, "invalid escape '\\x'");
    parse_fails("s = \"a\\e\"\n", 1, "invalid escape '\\e'");
    parse_fails("s = \"a\\ b\"\n", 1, "invalid escape: '\\' followed by a space");
    parse_fails("s = \"a\\u12\"\n", 1, "\\u needs exactly 4 hex digits");
    parse_fails("s = \"a\\U0001F60\"\n", 1, "\\U needs exactly 8 hex digits");
    parse_fails("s = \"\\uD800\"\n", 1, "not a Unicode scalar value");
    parse_fails("s = \"\\U00110000\"\n", 1, "not a Unicode scalar value");
    parse_fails("s = \"\\UFFFFFFFF\"\n", 1, "not a Unicode scalar value");
    parse_fails("a = 1\ns = \"unterminated\nb = 2\n", 2, "not closed on this line");
    parse_fails("s = \"unterminated", 1, "not closed on this line");
    parse_fails("s = 'unterminated\n", 1, "literal string is not closed");
    parse_fails("s = \"a\x01"
                "b\"\n",
                1, "control character U+0001 in a string must be escaped");
    parse_fails("s = \"a\x7f\"\n", 1, "control character U+007F");
    parse_fails("s = 'a\x1b'\n", 1, "control character U+001B is not allowed");
    parse_fails("s = \"a\rb\"\n", 1, "not closed on this line");
}

Test(toml, rejects_bad_integers)
{
    parse_fails("x = 012\n", 1, "leading zeros");
    parse_fails("x = -01\n", 1, "leading zeros");
    parse_fails("x = 00\n", 1, "leading zeros");
    parse_fails("x = 0_1\n", 1, "leading zeros");
    parse_fails("x = 1__0\n", 1, "'_' only between digits");
    parse_fails("x = 1_\n", 1, "'_' only between digits");
    parse_fails("x = _1\n", 1, "invalid number '_1'");
    parse_fails("x = +_1\n", 1, "expected digits");
    parse_fails("x = +\n", 1, "invalid number '+'");
    parse_fails("x = --1\n", 1, "invalid number");
    parse_fails("x = 1-2\n", 1, "invalid number");
    parse_fails("x = 9223372036854775808\n", 1, "out of range");
    parse_fails("x = -9223372036854775809\n", 1, "out of range");
    parse_fails("x = 99999999999999999999999\n", 1, "out of range");
}

Test(toml, rejects_bad_floats)
{
    parse_fails("x = .5\n", 1, "invalid number '.5'");
    parse_fails("x = 5.\n", 1, "expected digits after '.'");
    parse_fails("x = 1.e5\n", 1, "expected digits after '.'");
    parse_fails("x = 1e\n", 1, "expected digits in the exponent");
    parse_fails("x = 1e+\n", 1, "expected digits in the exponent");
    parse_fails("x = 1.2.3\n", 1, "invalid number");
    parse_fails("x = 00.5\n", 1, "leading zeros");
    parse_fails("x = 1._5\n", 1, "expected digits after '.'");
    parse_fails("x = 1e400\n", 1, "out of range");
    parse_fails("x = -1e400\n", 1, "out of range");
}

Test(toml, rejects_duplicates)
{
    parse_fails("a = 1\nb = 2\na = 3\n", 3, "duplicate key 'a' (first defined on line 1)");
    parse_fails("[t]\nk = 1\n\nk = 2\n", 4, "duplicate key 'k' (first defined on line 2)");
    parse_fails("\"a\" = 1\n'a' = 2\n", 2, "duplicate key 'a'");
    parse_fails("[t]\n[u]\n[t]\n", 3, "table [t] is defined twice (first on line 1)");
    parse_fails("[a.b]\n[a.b]\n", 2, "table [a.b] is defined twice");
    parse_fails("[a.b]\n[a]\n[a]\n", 3, "table [a] is defined twice (first on line 2)");
    parse_fails("[a.b]\nx = 1\n[a]\nb = 2\n", 4, "duplicate key 'b' (first defined on line 1)");
    parse_fails("a = 1\n[a]\n", 2, "cannot define table [a]: 'a' is already an integer (line 1)");
    parse_fails("a = 1\n[a.b]\n", 2, "cannot open [a.b]: 'a' is already an integer (line 1)");
    parse_fails("[[a]]\n[a]\n", 2, "'a' is an array of tables (line 1): add an entry with [[a]]");
    parse_fails("[a]\n[[a]]\n", 2, "[[a]] needs an array of tables, but [a] is a table (line 1)");
    parse_fails("a = []\n[[a]]\n", 2, "'a' is already an array (line 1)");
    parse_fails("a = 'x'\n[[a]]\n", 2, "'a' is already a string (line 1)");
    parse_fails("[[p]]\nk = 1\nk = 2\n", 3, "duplicate key 'k'");
}

Test(toml, rejects_bad_headers)
{
    parse_fails("[]\n", 1, "expected a table name");
    parse_fails("[a\nk = 1\n", 1, "expected ']' to close the table header");
    parse_fails("[[a]\n", 1, "expected ']]' to close the table header");
    parse_fails("[[a] ]\n", 1, "expected ']]'");
    parse_fails("[a.]\n", 1, "expected a table name");
    parse_fails("[.a]\n", 1, "expected a table name");
    parse_fails("[a b]\n", 1, "expected ']'");
    parse_fails("[a]]\n", 1, "unexpected ']' after the table header");
    parse_fails("[a] x = 1\n", 1, "unexpected 'x' after the table header");
    parse_fails("ok = 1\n[\"a\n", 2, "not closed on this line");
}

Test(toml, rejects_bad_arrays)
{
    parse_fails("x = 1\na = [1, 2\n\n", 2, "array is never closed");
    parse_fails("a = [\n1,\n2", 1, "array is never closed");
    parse_fails("a = [1 2]\n", 1, "expected ',' or ']' in the array, found '2'");
    parse_fails("a = [,1]\n", 1, "expected a value");
    parse_fails("a = [1,,2]\n", 1, "expected a value");
    parse_fails("a = [\n1\n2]\n", 3, "expected ',' or ']'");
    parse_fails("a = [{}]\n", 1, "inline tables");
    parse_fails("a = [1]]\n", 1, "unexpected ']' after the value");
}

Test(toml, rejects_bad_bytes)
{
    parse_fails("a = 1\n\nb = \"\xff\"\n", 3, "invalid UTF-8");
    parse_fails("a = \"\xc0\xaf\"\n", 1, "invalid UTF-8");         /* overlong '/' */
    parse_fails("a = \"\xed\xa0\x80\"\n", 1, "invalid UTF-8");     /* encoded surrogate */
    parse_fails("a = \"\xf4\x90\x80\x80\"\n", 1, "invalid UTF-8"); /* above U+10FFFF */
    parse_fails("a = \"\xe2\x82\"", 1, "invalid UTF-8");           /* truncated */
    parse_fails_len("a = 1\nb = 2\0\n", 13, WZP_EINVAL, 2, "NUL byte");
    parse_fails("a = 1\rb = 2\n", 1, "carriage return without a line feed");
    parse_fails("\r", 1, "carriage return");
    parse_fails("# bell \x07 in a comment\n", 1, "control character U+0007 in a comment");
    parse_fails("a = 1 # del \x7f\n", 1, "in a comment");
    parse_fails("\x0c", 1, "expected a key");
    parse_fails("a = \xc3\xa9\n", 1, "found a non-ASCII character");
}

/* ---- limits ---- */

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    struct wzp_buf b = WZP_BUF_INIT;
    cr_assert_eq(wzp_buf_append_str(&b, head), WZP_OK);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(wzp_buf_append_str(&b, unit), WZP_OK);
    cr_assert_eq(wzp_buf_append(&b, tail, strlen(tail) + 1), WZP_OK);
    return (char *)b.data;
}

Test(toml, limit_input_size)
{
    size_t n = WZP_TOML_MAX_INPUT + 1;
    char *text = malloc(n + 1);
    memset(text, '\n', n);
    text[n] = '\0';
    parse_fails_len(text, n, WZP_ETOOBIG, 0, "the limit is 1048576 bytes");
    struct wzp_toml *doc;
    cr_assert_eq(wzp_toml_parse(text, n - 1, &doc, NULL, 0), WZP_OK);
    wzp_toml_free(doc);
    free(text);
}

Test(toml, limit_array_nesting)
{
    char *ok = repeat("a = ", "[", WZP_TOML_MAX_DEPTH, "");
    char *deep = repeat("a = ", "[", WZP_TOML_MAX_DEPTH + 1, "");
    char *okfull = repeat(ok, "]", WZP_TOML_MAX_DEPTH, "\n");
    char *deepfull = repeat(deep, "]", WZP_TOML_MAX_DEPTH + 1, "\n");
    struct wzp_toml *doc = parse_ok(okfull);
    wzp_toml_free(doc);
    parse_fails_len(deepfull, strlen(deepfull), WZP_ETOOBIG, 1, "nested more than 16 deep");
    free(ok);
    free(deep);
    free(okfull);
    free(deepfull);
}

Test(toml, limit_header_parts)
{
    char *ok = repeat("[a", ".a", WZP_TOML_MAX_DEPTH - 1, "]\nk = 1\n");
    char *deep = repeat("x = 1\n[a", ".a", WZP_TOML_MAX_DEPTH, "]\n");
    struct wzp_toml *doc = parse_ok(ok);
    wzp_toml_free(doc);
    parse_fails_len(deep, strlen(deep), WZP_ETOOBIG, 2, "more than 16 parts");
    free(ok);
    free(deep);
}

Test(toml, limit_array_length)
{
    char *ok = repeat("a = [", "1,", WZP_TOML_MAX_ARRAY, "]\n");
    char *big = repeat("a = [", "1,", WZP_TOML_MAX_ARRAY + 1, "]\n");
    struct wzp_toml *doc = parse_ok(ok);
    cr_assert_eq(wzp_toml_array_len(get(doc, "a")), WZP_TOML_MAX_ARRAY);
    wzp_toml_free(doc);
    parse_fails_len(big, strlen(big), WZP_ETOOBIG, 1, "too many items in one array");
    free(ok);
    free(big);
    char *aot = repeat("", "[[p]]\n", WZP_TOML_MAX_ARRAY + 1, "");
    parse_fails_len(aot, strlen(aot), WZP_ETOOBIG, WZP_TOML_MAX_ARRAY + 1, "too many items");
    free(aot);
}

Test(toml, limit_keys_per_table)
{
    struct wzp_buf b = WZP_BUF_INIT;
    size_t full = 0;
    for (int i = 0; i <= WZP_TOML_MAX_KEYS; i++) {
        full = b.len;
        cr_assert_eq(wzp_buf_printf(&b, "k%d = %d\n", i, i), WZP_OK);
    }
    struct wzp_toml *doc;
    char err[256];
    cr_assert_eq(wzp_toml_parse((char *)b.data, full, &doc, err, sizeof err), WZP_OK, "%s", err);
    cr_assert_eq(wzp_toml_table_len(wzp_toml_root(doc)), WZP_TOML_MAX_KEYS);
    wzp_toml_free(doc);
    parse_fails_len((char *)b.data, b.len, WZP_ETOOBIG, WZP_TOML_MAX_KEYS + 1, "too many keys");
    wzp_buf_free(&b);
}

Test(toml, limit_total_values)
{
    struct wzp_buf b = WZP_BUF_INIT;
    for (int i = 0; i < 17; i++) {
        cr_assert_eq(wzp_buf_printf(&b, "a%d = [", i), WZP_OK);
        for (int j = 0; j < 4000; j++)
            cr_assert_eq(wzp_buf_append_str(&b, "1,"), WZP_OK);
        cr_assert_eq(wzp_buf_append_str(&b, "]\n"), WZP_OK);
    }
    parse_fails_len((char *)b.data, b.len, WZP_ETOOBIG, 17, "too many values");
    wzp_buf_free(&b);
}

Test(toml, small_error_buffers_are_safe)
{
    struct wzp_toml *doc;
    char err[8];
    memset(err, 'x', sizeof err);
    cr_assert_eq(wzp_toml_parse("a = ?", 5, &doc, err, sizeof err), WZP_EINVAL);
    cr_assert_eq(strlen(err), 7);
    cr_assert_str_eq(err, "line 1:");
    cr_assert_eq(wzp_toml_parse("a = ?", 5, &doc, NULL, 0), WZP_EINVAL);
    int line;
    cr_assert_eq(wzp_toml_parse_ex("\n[", 2, &doc, &line, NULL, 0), WZP_EINVAL);
    cr_assert_eq(line, 2);
    cr_assert_eq(wzp_toml_parse_ex("[", 1, &doc, NULL, NULL, 0), WZP_EINVAL);
}

/* A failure deep inside a structure frees everything built so far (checked by valgrind
 * and ASan runs of this file). */
Test(toml, errors_inside_structures_free_everything)
{
    parse_fails("[[p]]\na = 'x'\n[p.q.r]\nb = [[1, 'two', [3.0]], \"four\",\n"
                "  [\"five\", 6e]]\n",
                5, "exponent");
    parse_fails("a = [\"x\", \"y\", \"z\\q\"]\n", 1, "invalid escape");
    parse_fails("[t]\nk = 'v'\n[[t.list]]\n[[t.list]]\nx = [1,2,3\n", 5, "never closed");
}
