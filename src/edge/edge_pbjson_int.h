/* Internals shared by the JSON codec's decoder and encoder: field names, map entries, numbers. */
#ifndef EDGE_PBJSON_INT_H
#define EDGE_PBJSON_INT_H

#include "edge/edge_pbjson.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* Large enough for any finite double printed by edge__pbjson_format_double. */
#define EDGE__PBJSON_NUM_MAX 32

/* The depth limit opts asks for, defaulted and clamped. */
unsigned edge__pbjson_max_depth(const struct edge_pbjson_opts *opts);

/* The JSON name of a proto field (protoc's ToJsonName: drop each '_' and upper-case the letter
 * after it). Writes at most cap - 1 characters and a NUL; returns the full length, as snprintf. */
size_t edge__pbjson_json_name(const char *proto_name, char *out, size_t cap);

/* Whether key[0, len) is the JSON name of proto_name, without building that name. */
bool edge__pbjson_json_name_eq(const char *proto_name, const char *key, size_t len);

/* Whether f is a protobuf map. protobuf-c keeps no map_entry option, so this recognises the
 * shape protoc gives every map: a repeated field of a nested type named <CamelField>Entry with
 * exactly `key = 1` (an integral, bool or string type) and `value = 2`. */
bool edge__pbjson_field_is_map(const ProtobufCMessageDescriptor *parent,
                               const ProtobufCFieldDescriptor *f);

/* Bytes one value of this type takes in a generated struct (one element of a repeated field). */
size_t edge__pbjson_type_size(ProtobufCType type);

/* The proto name of a scalar type ("uint32"), for error messages. */
const char *edge__pbjson_type_name(ProtobufCType type);

/* The shortest text that reads back as the same finite value (through strtod, and for floats a
 * conversion to float), as a JSON number. Negative zero keeps its sign as "-0.0", since jansson
 * reads "-0" as the integer 0. Returns the length. */
size_t edge__pbjson_format_double(double value, char out[EDGE__PBJSON_NUM_MAX]);
size_t edge__pbjson_format_float(float value, char out[EDGE__PBJSON_NUM_MAX]);

/* Whether the finite double rounds to a finite float (and so converts without overflow). */
bool edge__pbjson_double_fits_float(double value);

#endif
