/* The HTTP edge's one JSON <-> protobuf-c codec, driven only by protobuf-c descriptors and
 * following the proto3 JSON mapping (lowerCamelCase names, int64 as number or string, base64
 * bytes, enums by name). Stateless: safe to call from any thread.
 *
 * Where it departs from the full mapping, because protobuf-c descriptors carry less than protoc's:
 * - names are computed from the proto name (protoc's rule); a `json_name` option is not seen.
 * - maps are recognised by the shape protoc gives them (see edge__pbjson_field_is_map).
 * - well-known types (Timestamp, Duration, wrappers, Struct, Any) are plain messages.
 * - decode takes an enum by name or by a number the enum defines; unknown numbers are refused.
 *   Encode writes a number without a name (one that came from the wire) as a JSON number.
 * - decode refuses duplicate object keys and a field given under both of its names.
 * - a uint64 above INT64_MAX must arrive as a string: jansson cannot hold it as a number.
 * Floats go through printf/strtod, so the process must keep LC_NUMERIC at "C". */
#ifndef EDGE_PBJSON_H
#define EDGE_PBJSON_H

#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_status.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#define EDGE_PBJSON_MAX_DEPTH_DEFAULT 64
#define EDGE_PBJSON_MAX_DEPTH_LIMIT   256 /* larger max_depth values are clamped to this */
#define EDGE_PBJSON_MAX_TEXT_DEFAULT  ((size_t)1 << 20)

/* A zeroed struct (or a NULL pointer) gives the defaults. */
struct edge_pbjson_opts {
    /* Encode: also emit proto3 scalars holding their zero value and empty repeated fields and
     * maps ([] and {}). Fields with presence (oneof members, proto2 optional, messages) are
     * never "defaults": they appear only when set, or as null with emit_nulls. */
    bool emit_defaults;
    /* Encode: unset fields with presence appear as an explicit null instead of being left out
     * (except the other members of a oneof that has one member set). */
    bool emit_nulls;
    /* Encode: 64-bit integers as decimal strings. By default they are numbers, as the original
     * TypeScript API sent them, except uint64 values above INT64_MAX, which are always strings
     * because jansson (and JavaScript) cannot read them back exactly. */
    bool int64_as_string;
    /* Decode: an unknown key is an error naming it. By default unknown keys are ignored,
     * because older agents send fields the edge has since dropped. */
    bool reject_unknown;
    /* Decode and encode: the deepest message nesting accepted; 0 means
     * EDGE_PBJSON_MAX_DEPTH_DEFAULT. The top-level message is depth 1. */
    unsigned max_depth;
    /* edge_pbjson_decode: longer JSON text fails with EC_ETOOBIG; 0 means
     * EDGE_PBJSON_MAX_TEXT_DEFAULT. */
    size_t max_text_len;
};

/* Parses JSON text (need not be NUL-terminated) into a new message of type desc. The message and
 * everything it points to are allocated in arena and die with it; the caller frees nothing, and
 * must not call protobuf_c_message_free_unpacked on it. On failure *out is NULL, err names the
 * offending field path (`items[2].count: expected an integer, got "abc"`) and the status is
 * EC_EINVAL, or EC_ETOOBIG for text over opts->max_text_len. Any memory already taken from the
 * arena stays there until the arena is reset. */
enum ec_status edge_pbjson_decode(const ProtobufCMessageDescriptor *desc, const char *text,
                                  size_t len, const struct edge_pbjson_opts *opts,
                                  struct ec_arena *arena, ProtobufCMessage **out,
                                  struct ec_err *err);

/* As edge_pbjson_decode, from a parsed JSON object (borrowed; not modified). */
enum ec_status edge_pbjson_decode_json(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                       const struct edge_pbjson_opts *opts, struct ec_arena *arena,
                                       ProtobufCMessage **out, struct ec_err *err);

/* Appends msg as compact JSON text to out. Fields come in tag-number order. Fails with
 * EC_ETOOBIG when out's cap is reached, or EC_EINTERNAL for a message that has no JSON form
 * (a string that is not UTF-8, nesting over max_depth); on failure out is left as it was. */
enum ec_status edge_pbjson_encode(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts,
                                  struct ec_buf *out, struct ec_err *err);

/* msg as a jansson value, for callers that embed it in a larger document. On success *out is a
 * new reference (caller json_decref's it); on failure it is NULL. Slower than
 * edge_pbjson_encode, which it is built on so that the two never disagree. */
enum ec_status edge_pbjson_to_json(const ProtobufCMessage *msg, const struct edge_pbjson_opts *opts,
                                   json_t **out, struct ec_err *err);

/* A protobuf-c allocator over arena whose free does nothing: the decoder allocates through one,
 * and callers can pass one to protobuf_c_message_unpack to put wire-format messages in the
 * same arena. The allocator borrows arena and is valid while the arena is. */
void edge_pbjson_allocator_init(ProtobufCAllocator *alloc, struct ec_arena *arena);

#endif
