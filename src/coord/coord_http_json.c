/* JSON field readers for the coordinator's routes: each bad value becomes a 400 whose reason
 * names the field ("agentId: expected a string"), never a 500. */
#include "coord/coord_http_int.h"

#include <stdio.h>
#include <string.h>

enum ec_status coord__body_object(struct edge_req *req, json_t **out, struct ec_err *err)
{
    enum ec_status st = edge_req_json(req, out, err);
    if (st != EC_OK)
        return st;
    if (!json_is_object(*out))
        return ec_err_set(err, EC_EINVAL, NULL, "body: expected a JSON object");
    return EC_OK;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

enum ec_status coord__field_str(const json_t *o, const char *name, bool required, size_t min,
                                size_t max, const char *dflt, const char **out, struct ec_err *err)
{
    const json_t *v = json_object_get(o, name);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return ec_err_set(err, EC_EINVAL, NULL, "%s: is required", name);
        *out = dflt;
        return EC_OK;
    }
    if (!json_is_string(v))
        return ec_err_set(err, EC_EINVAL, NULL, "%s: expected a string, got %s", name,
                          type_name(v));
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (strlen(s) != len)
        return ec_err_set(err, EC_EINVAL, NULL, "%s: holds a NUL character", name);
    if (len < min || len > max)
        return ec_err_set(err, EC_EINVAL, NULL, "%s: length %zu is outside %zu..%zu", name, len,
                          min, max);
    *out = s;
    return EC_OK;
}

bool coord__id_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            return false;
    }
    return n >= 1 && n <= max;
}

enum ec_status coord__field_id(const json_t *o, const char *name, bool required, const char **out,
                               struct ec_err *err)
{
    enum ec_status st = coord__field_str(o, name, required, 1, COORD_ID_MAX, NULL, out, err);
    if (st != EC_OK || *out == NULL)
        return st;
    if (!coord__id_ok(*out, COORD_ID_MAX))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "%s: must be printable ASCII without spaces, quotes or backslashes",
                          name);
    return EC_OK;
}

enum ec_status coord__field_enum(const json_t *o, const char *name, const char *const *allowed,
                                 bool required, const char *dflt, const char **out,
                                 struct ec_err *err)
{
    const char *v = NULL;
    enum ec_status st = coord__field_str(o, name, required, 0, 64, dflt, &v, err);
    if (st != EC_OK)
        return st;
    *out = v;
    if (v == NULL)
        return EC_OK;
    char list[200] = "";
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(v, allowed[i]) == 0) {
            *out = allowed[i];
            return EC_OK;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 allowed[i]);
    }
    return ec_err_set(err, EC_EINVAL, NULL, "%s: \"%.64s\" is not one of %s", name, v, list);
}

enum ec_status coord__field_int(const json_t *o, const char *name, bool required, int64_t min,
                                int64_t max, int64_t dflt, int64_t *out, struct ec_err *err)
{
    const json_t *v = json_object_get(o, name);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return ec_err_set(err, EC_EINVAL, NULL, "%s: is required", name);
        *out = dflt;
        return EC_OK;
    }
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v) &&
               json_real_value(v) > -9e15 && json_real_value(v) < 9e15) {
        n = (int64_t)json_real_value(v); /* 5e3 or 30.0 from a JavaScript client */
    } else {
        return ec_err_set(err, EC_EINVAL, NULL, "%s: expected an integer, got %s", name,
                          type_name(v));
    }
    if (n < min || n > max)
        return ec_err_set(err, EC_EINVAL, NULL, "%s: %lld is outside %lld..%lld", name,
                          (long long)n, (long long)min, (long long)max);
    *out = n;
    return EC_OK;
}

enum ec_status coord__field_bool(const json_t *o, const char *name, bool required, int dflt,
                                 int *out, struct ec_err *err)
{
    const json_t *v = json_object_get(o, name);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return ec_err_set(err, EC_EINVAL, NULL, "%s: is required", name);
        *out = dflt;
        return EC_OK;
    }
    if (!json_is_boolean(v))
        return ec_err_set(err, EC_EINVAL, NULL, "%s: expected a boolean, got %s", name,
                          type_name(v));
    *out = json_is_true(v);
    return EC_OK;
}

enum ec_status coord__field_object_text(const json_t *o, const char *name, size_t max,
                                        struct ec_arena *arena, const char **out,
                                        struct ec_err *err)
{
    const json_t *v = json_object_get(o, name);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return EC_OK;
    if (!json_is_object(v))
        return ec_err_set(err, EC_EINVAL, NULL, "%s: expected an object, got %s", name,
                          type_name(v));
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (text == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "%s: cannot be serialised", name);
    size_t len = strlen(text);
    if (len > max) {
        free(text);
        return ec_err_set(err, EC_EINVAL, NULL, "%s: %zu bytes of JSON; at most %zu", name, len,
                          max);
    }
    *out = ec_arena_strndup(arena, text, len);
    free(text);
    return EC_OK;
}

enum ec_status coord__field_scalar_text(const json_t *o, const char *name, size_t max,
                                        struct ec_arena *arena, const char **out,
                                        struct ec_err *err)
{
    const json_t *v = json_object_get(o, name);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return EC_OK;
    if (json_is_integer(v)) {
        *out = ec_arena_sprintf(arena, "%lld", (long long)json_integer_value(v));
        return EC_OK;
    }
    if (json_is_real(v)) {
        *out = ec_arena_sprintf(arena, "%g", json_real_value(v));
        return EC_OK;
    }
    return coord__field_str(o, name, false, 0, max, NULL, out, err);
}
