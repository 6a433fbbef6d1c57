/* The subset checks run on the host before a program starts: the original's deny-lists over
 * the raw text, and for JavaScript a token-level stand-in for its acorn allow-list. Defence in
 * depth only: the namespaces and rlimits are the boundary. */
#include "agent/sandbox_int.h"

#include <stdio.h>
#include <string.h>

enum deny_kind {
    DENY_SUBSTRING, /* anywhere, as the original's plain regexes */
    DENY_CALL,      /* identifier start, then optional blanks, then "(" */
    DENY_MEMBER,    /* identifier start, then optional blanks, then "." */
    DENY_IMPORT,    /* "import", blanks, the module name, then not an identifier character */
};

struct deny_pattern {
    enum deny_kind kind;
    const char *word;
    const char *shown; /* as the original wrote it */
};

static const struct deny_pattern python_denylist[] = {
    { DENY_CALL, "exec", "exec(" },       { DENY_CALL, "eval", "eval(" },
    { DENY_CALL, "compile", "compile(" }, { DENY_SUBSTRING, "__import__", "__import__" },
    { DENY_IMPORT, "os", "import os" },   { DENY_IMPORT, "subprocess", "import subprocess" },
    { DENY_CALL, "open", "open(" },       { DENY_SUBSTRING, "socket", "socket" },
};

static const struct deny_pattern js_denylist[] = {
    { DENY_CALL, "eval", "eval(" },       { DENY_CALL, "Function", "Function(" },
    { DENY_CALL, "require", "require(" }, { DENY_MEMBER, "process", "process." },
    { DENY_MEMBER, "fs", "fs." },         { DENY_SUBSTRING, "child_process", "child_process" },
};

static bool is_ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static size_t line_of(const char *code, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos; i++)
        line += code[i] == '\n';
    return line;
}

/* Whether p matches at code[i]; i is where p->word would start. */
static bool deny_match_at(const struct deny_pattern *p, const char *code, size_t len, size_t i)
{
    const char *word = p->kind == DENY_IMPORT ? "import" : p->word;
    size_t wlen = strlen(word);
    if (len - i < wlen || memcmp(code + i, word, wlen) != 0)
        return false;
    if (p->kind == DENY_SUBSTRING)
        return true;
    if (i > 0 && is_ident_char((unsigned char)code[i - 1]))
        return false;
    size_t j = i + wlen;
    if (p->kind == DENY_IMPORT) {
        size_t k = j;
        while (k < len && is_blank((unsigned char)code[k]) && code[k] != '\n')
            k++;
        if (k == j)
            return false;
        size_t mlen = strlen(p->word);
        if (len - k < mlen || memcmp(code + k, p->word, mlen) != 0)
            return false;
        return k + mlen == len || !is_ident_char((unsigned char)code[k + mlen]);
    }
    while (j < len && is_blank((unsigned char)code[j]))
        j++;
    if (j >= len)
        return false;
    return code[j] == (p->kind == DENY_CALL ? '(' : '.');
}

bool sandbox__denylist_scan(enum sandbox_language lang, const char *code, size_t len, char *reason,
                            size_t reason_cap)
{
    const struct deny_pattern *list = lang == SANDBOX_PYTHON ? python_denylist : js_denylist;
    size_t count = lang == SANDBOX_PYTHON ? sizeof(python_denylist) / sizeof(python_denylist[0])
                                          : sizeof(js_denylist) / sizeof(js_denylist[0]);
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < count; k++) {
            if (deny_match_at(&list[k], code, len, i)) {
                if (reason_cap > 0)
                    snprintf(reason, reason_cap, "denied pattern \"%s\" at line %zu", list[k].shown,
                             line_of(code, i));
                return false;
            }
        }
    }
    return true;
}

/* --- JavaScript tokens */

/* The original's blocked identifiers, plus the usual routes around them (constructor chains,
 * prototype pokes) and the globals that reach outside the program. */
static const char *const js_blocked_identifiers[] = {
    "process", "require", "globalThis",        "eval",      "Function",
    "Proxy",   "Reflect", "constructor",       "__proto__", "WebAssembly",
    "fetch",   "Atomics", "SharedArrayBuffer",
};

/* Syntax the original's allow-list has no node for (classes, async, new, modules, this...). */
static const char *const js_blocked_keywords[] = {
    "class", "async", "await",    "new",   "import", "export",
    "this",  "with",  "debugger", "yield", "super",
};

static bool word_in(const char *w, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], w, n) == 0)
            return true;
    return false;
}

struct js_scan {
    const char *code;
    size_t len;
    size_t pos;
    char *reason;
    size_t reason_cap;
    /* Whether a "/" here starts a regular expression: true after an operator or at the start,
     * false after a value (identifier, number, closing bracket). */
    bool regex_ok;
    bool after_dot;
    /* Template literals: brace depth at which each open "${" returns to its template. */
    size_t tmpl_depth[32];
    size_t tmpl_n;
    size_t brace_depth;
};

static bool js_fail(struct js_scan *s, size_t at, const char *fmt, const char *what, size_t n)
{
    if (s->reason_cap > 0) {
        char word[64];
        size_t w = n < sizeof(word) - 1 ? n : sizeof(word) - 1;
        memcpy(word, what, w);
        word[w] = '\0';
        char msg[160];
        snprintf(msg, sizeof(msg), fmt, word);
        snprintf(s->reason, s->reason_cap, "%s at line %zu", msg, line_of(s->code, at));
    }
    return false;
}

/* Skips a quoted string starting at s->pos (the quote). False when unterminated. */
static bool js_skip_string(struct js_scan *s)
{
    char q = s->code[s->pos++];
    while (s->pos < s->len) {
        char c = s->code[s->pos++];
        if (c == '\\') {
            s->pos++;
            continue;
        }
        if (c == q)
            return true;
        if (c == '\n')
            return false;
    }
    return false;
}

/* Skips template text up to the closing backquote or an opening "${" (left for the caller). */
static bool js_skip_template_text(struct js_scan *s)
{
    while (s->pos < s->len) {
        char c = s->code[s->pos];
        if (c == '\\') {
            s->pos += 2;
            continue;
        }
        if (c == '`') {
            s->pos++;
            return true;
        }
        if (c == '$' && s->pos + 1 < s->len && s->code[s->pos + 1] == '{') {
            if (s->tmpl_n == sizeof(s->tmpl_depth) / sizeof(s->tmpl_depth[0]))
                return false;
            s->tmpl_depth[s->tmpl_n++] = s->brace_depth;
            s->brace_depth++;
            s->pos += 2;
            return true;
        }
        s->pos++;
    }
    return false;
}

static bool js_skip_regex(struct js_scan *s)
{
    bool in_class = false;
    s->pos++; /* the opening slash */
    while (s->pos < s->len) {
        char c = s->code[s->pos++];
        if (c == '\\') {
            s->pos++;
        } else if (c == '\n') {
            return false;
        } else if (c == '[') {
            in_class = true;
        } else if (c == ']') {
            in_class = false;
        } else if (c == '/' && !in_class) {
            while (s->pos < s->len && is_ident_char((unsigned char)s->code[s->pos]))
                s->pos++; /* flags */
            return true;
        }
    }
    return false;
}

/* Keywords after which a "/" starts a regular expression although they are words. */
static bool js_word_allows_regex(const char *w, size_t n)
{
    static const char *const words[] = { "return", "typeof", "instanceof", "in",     "of",   "case",
                                         "do",     "else",   "void",       "delete", "throw" };
    return word_in(w, n, words, sizeof(words) / sizeof(words[0]));
}

bool sandbox__js_token_check(const char *code, size_t len, char *reason, size_t reason_cap)
{
    struct js_scan s = {
        .code = code, .len = len, .reason = reason, .reason_cap = reason_cap, .regex_ok = true
    };
    while (s.pos < len) {
        unsigned char c = (unsigned char)code[s.pos];
        if (is_blank(c)) {
            s.pos++;
            continue;
        }
        if (c == '/' && s.pos + 1 < len && code[s.pos + 1] == '/') {
            while (s.pos < len && code[s.pos] != '\n')
                s.pos++;
            continue;
        }
        if (c == '/' && s.pos + 1 < len && code[s.pos + 1] == '*') {
            const char *end = NULL;
            for (size_t i = s.pos + 2; i + 1 < len; i++)
                if (code[i] == '*' && code[i + 1] == '/') {
                    end = code + i;
                    break;
                }
            if (end == NULL)
                return js_fail(&s, s.pos, "unterminated comment%s", "", 0);
            s.pos = (size_t)(end - code) + 2;
            continue;
        }
        size_t start = s.pos;
        if (c == '"' || c == '\'') {
            if (!js_skip_string(&s))
                return js_fail(&s, start, "unterminated string%s", "", 0);
            s.regex_ok = false;
            s.after_dot = false;
            continue;
        }
        if (c == '`') {
            s.pos++;
            if (!js_skip_template_text(&s))
                return js_fail(&s, start, "unterminated or too deeply nested template%s", "", 0);
            s.regex_ok = s.pos > 0 && code[s.pos - 1] == '{';
            s.after_dot = false;
            continue;
        }
        if (c == '/' && s.regex_ok) {
            if (!js_skip_regex(&s))
                return js_fail(&s, start, "unterminated regular expression%s", "", 0);
            s.regex_ok = false;
            s.after_dot = false;
            continue;
        }
        if (c == '\\')
            return js_fail(&s, start, "escape sequences outside strings are not allowed%s", "", 0);
        if (is_ident_char(c)) {
            while (s.pos < len && is_ident_char((unsigned char)code[s.pos]))
                s.pos++;
            const char *w = code + start;
            size_t n = s.pos - start;
            bool number = c >= '0' && c <= '9';
            if (!number) {
                if (word_in(w, n, js_blocked_identifiers,
                            sizeof(js_blocked_identifiers) / sizeof(js_blocked_identifiers[0])))
                    return js_fail(&s, start, "identifier \"%s\" is not allowed", w, n);
                if (!s.after_dot &&
                    word_in(w, n, js_blocked_keywords,
                            sizeof(js_blocked_keywords) / sizeof(js_blocked_keywords[0])))
                    return js_fail(&s, start, "\"%s\" is not allowed", w, n);
            }
            s.regex_ok = !number && !s.after_dot && js_word_allows_regex(w, n);
            s.after_dot = false;
            continue;
        }
        /* punctuation */
        s.pos++;
        s.after_dot = c == '.' && !(s.pos < len && code[s.pos] >= '0' && code[s.pos] <= '9');
        if (c == '?' && s.pos < len && code[s.pos] == '.') {
            s.pos++;
            s.after_dot = true;
        }
        if (c == '{') {
            s.brace_depth++;
        } else if (c == '}') {
            if (s.brace_depth > 0)
                s.brace_depth--;
            if (s.tmpl_n > 0 && s.tmpl_depth[s.tmpl_n - 1] == s.brace_depth) {
                s.tmpl_n--;
                size_t tstart = s.pos;
                if (!js_skip_template_text(&s))
                    return js_fail(&s, tstart, "unterminated template%s", "", 0);
                s.regex_ok = s.pos > 0 && code[s.pos - 1] == '{';
                continue;
            }
        }
        s.regex_ok = !(c == ')' || c == ']' || c == '}');
    }
    if (s.tmpl_n > 0)
        return js_fail(&s, len, "unterminated template%s", "", 0);
    return true;
}

bool sandbox__subset_check(enum sandbox_language lang, const char *code, size_t len, char *reason,
                           size_t reason_cap)
{
    if (len > SANDBOX_MAX_CODE_BYTES) {
        if (reason_cap > 0)
            snprintf(reason, reason_cap, "the program is %zu bytes, over the %u-byte limit", len,
                     SANDBOX_MAX_CODE_BYTES);
        return false;
    }
    const char *nul = memchr(code, '\0', len);
    if (nul != NULL) {
        if (reason_cap > 0)
            snprintf(reason, reason_cap, "NUL byte at line %zu",
                     line_of(code, (size_t)(nul - code)));
        return false;
    }
    if (!sandbox__denylist_scan(lang, code, len, reason, reason_cap))
        return false;
    if (lang == SANDBOX_JAVASCRIPT && !sandbox__js_token_check(code, len, reason, reason_cap))
        return false;
    return true;
}
